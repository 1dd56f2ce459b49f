"""`videoanyup features DATASET`: videos per minute and frames per second, 1 process against several.

Each configuration runs the real command (`python -m videoanyup.tasks.cli features DATASET …`) into a fresh
output folder. Two figures per run:
- end to end: the command's wall time, start-up of every process (imports, Lightning's launch, building the
  backbone and the upsampler) included — what a small dataset costs;
- loop: the predict loop alone, the slowest rank's sum of per-video seconds from `manifest.jsonl` — what a
  large dataset costs per video once start-up is amortised.
On the CPU the ranks are processes with gloo (`--accelerator cpu --strategy ddp`); on a GPU machine,
1 GPU against all of them. The machine may be shared: the load average at the start is in the table.

    python benchmarks/bench_features.py                         # synthetic clips, 1 vs 2 CPU processes
    python benchmarks/bench_features.py --videos 8 --frames 6,12 --size 56x84 --threads 1
    python benchmarks/bench_features.py --data /path/to/DAVIS --backbone dinov2_vits14 --accelerator gpu
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DEFAULT_JSON = Path(__file__).parent / "results" / "bench_features.json"


def synthetic_dataset(folder: Path, *, videos: int, frames: tuple[int, int], size: tuple[int, int]) -> None:
    """`videos` mp4 clips (lossless) of a scikit-image picture panning, lengths spread over `frames`."""
    import numpy as np
    import skimage.data

    from videoanyup.tasks.video_io import VideoWriter

    pictures = [skimage.data.astronaut(), skimage.data.coffee(), skimage.data.chelsea(), skimage.data.rocket()]
    h, w = size
    folder.mkdir(parents=True, exist_ok=True)
    for v in range(videos):
        t = frames[0] + (frames[1] - frames[0]) * v // max(videos - 1, 1)
        picture = pictures[v % len(pictures)]
        with VideoWriter(folder / f"clip{v:03d}.mp4", fps=24, lossless=True, preset="ultrafast") as writer:
            for k in range(t):
                writer.write(np.ascontiguousarray(picture[2 * k : 2 * k + h, 3 * k : 3 * k + w, :3]))


def run_config(data: Path, out: Path, devices: int, args: argparse.Namespace) -> dict:
    """One run of the command; its timings from the wall clock and the manifest."""
    strategy = ["--strategy", "ddp"] if devices > 1 else []
    upsampler = ["--upsampler", args.upsampler] if args.upsampler else []
    command = [sys.executable, "-m", "videoanyup.tasks.cli", "features", str(data), "-o", str(out), "--backbone",
               args.backbone, *(["--random-backbone"] if args.random_backbone else []), *upsampler,
               "--accelerator", args.accelerator, "--devices", str(devices), *strategy, "--quiet",
               "--chunk-frames", str(args.chunk_frames), *(["--short-side", str(args.short_side)] if args.short_side else [])]
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), HF_HUB_OFFLINE=os.environ.get("HF_HUB_OFFLINE", "1"))
    load = os.getloadavg()[0]
    began = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    wall = time.perf_counter() - began
    lines = [json.loads(x) for x in (out / "manifest.jsonl").read_text().splitlines()] if (out / "manifest.jsonl").is_file() else []
    good = [x for x in lines if x["status"] == "done"]
    per_rank: dict[int, float] = {}
    for x in good:
        per_rank[x["rank"]] = per_rank.get(x["rank"], 0.0) + x["seconds"]
    loop = max(per_rank.values(), default=float("nan"))
    frames = sum(x["frames"] for x in good)
    return {
        "devices": devices, "accelerator": args.accelerator, "threads_per_process": args.threads, "exit_code": done.returncode,
        "videos": len(good), "failed": len(lines) - len(good), "frames": frames, "load_average": round(load, 2),
        "wall_s": round(wall, 2), "loop_s": round(loop, 2),
        "videos_per_min_end_to_end": round(60 * len(good) / wall, 2), "frames_per_s_end_to_end": round(frames / wall, 3),
        "videos_per_min_loop": round(60 * len(good) / loop, 2), "frames_per_s_loop": round(frames / loop, 3),
        "videos_per_rank": {str(r): sum(x["rank"] == r for x in good) for r in sorted(per_rank)},
        "stderr_tail": done.stderr.strip().splitlines()[-3:] if done.returncode not in (0,) else [],
    }


def format_table(rows: list[dict]) -> str:
    head = ("| processes | videos | frames | load avg | wall s | videos/min (end to end) | frames/s (end to end) | loop s "
            "| videos/min (loop) | frames/s (loop) |")
    lines = [head, "|" + "|".join("---" for _ in range(10)) + "|"]
    for r in rows:
        lines.append(
            f"| {r['devices']} × {r['accelerator']} | {r['videos']} | {r['frames']} | {r['load_average']} | {r['wall_s']} | "
            f"{r['videos_per_min_end_to_end']} | {r['frames_per_s_end_to_end']} | {r['loop_s']} | {r['videos_per_min_loop']} | "
            f"{r['frames_per_s_loop']} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", help="a dataset (default: synthetic clips made here)")
    parser.add_argument("--videos", type=int, default=8, help="synthetic clips (default 8)")
    parser.add_argument("--frames", default="6,12", help="synthetic clip lengths, min,max (default 6,12)")
    parser.add_argument("--size", default="56x84", help="synthetic clip HxW (default 56x84)")
    parser.add_argument("--backbone", default="dinov2_vits14")
    parser.add_argument("--random-backbone", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--upsampler", default=None, help="weights or none (default: the bundled default)")
    parser.add_argument("--short-side", type=int, default=None)
    parser.add_argument("--chunk-frames", type=int, default=4)
    parser.add_argument("--accelerator", default="cpu", help="cpu (default) or gpu")
    parser.add_argument("--devices", default=None, help="comma list of process counts (default: 1,2 on cpu; 1,all on gpu)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process (default 1)")
    parser.add_argument("--json", default=str(DEFAULT_JSON))
    args = parser.parse_args()

    if args.devices:
        counts = [int(x) for x in args.devices.split(",")]
    elif args.accelerator == "gpu":
        import torch

        counts = sorted({1, torch.cuda.device_count()})
    else:
        counts = [1, 2]
    with tempfile.TemporaryDirectory(prefix="bench_features_") as tmp:
        data = Path(args.data) if args.data else Path(tmp) / "data"
        if not args.data:
            lo, hi = (int(x) for x in args.frames.split(","))
            h, w = (int(x) for x in args.size.lower().split("x"))
            synthetic_dataset(data, videos=args.videos, frames=(lo, hi), size=(h, w))
        rows = [run_config(data, Path(tmp) / f"out{n}", n, args) for n in counts]
    print(format_table(rows))
    result = {"settings": {k: v for k, v in vars(args).items() if k != "json"}, "rows": rows}
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
