"""Memory and speed of `videoanyup upscale`: peak memory must not grow with the number of frames.

The bedroom clip (../shared/data/clips/bedroom, 960×540) is downscaled to 240×135 (antialiased bicubic)
and upscaled ×4 in bidirectional mode by `videoanyup upscale`, run as a subprocess per case; the peak
resident memory of each case is read with `getrusage(RUSAGE_CHILDREN)` in a fresh parent process, so cases
do not see each other's peaks. The weights are untrained (speed and memory do not depend on their values).

    python benchmarks/bench_upscale.py                       # lite 50 vs 200 frames, paper on a few frames
    python benchmarks/bench_upscale.py --frames 50,200 --paper-frames 8 --json benchmarks/results/bench_upscale.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

MEASURE = """
import json, resource, subprocess, sys
run = subprocess.run(sys.argv[1:], capture_output=True, text=True)
peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(json.dumps({"rc": run.returncode, "peak_kb": peak_kb, "stdout": run.stdout[-2000:], "stderr": run.stderr[-2000:]}))
"""


def prepare_frames(source: Path, folder: Path, count: int, size: tuple[int, int]) -> None:
    """The first `count` frames of `source`, antialiased-bicubic downscaled to `size` = (h, w), as PNGs."""
    from PIL import Image

    from videoanyup.functional import downsample
    from videoanyup.tasks.video_io import iter_frames, to_tensor, to_uint8

    folder.mkdir(parents=True, exist_ok=True)
    for index, frame in enumerate(iter_frames(source, 0, count)):
        small = downsample(to_tensor(frame[None]), size, antialias=True).clamp(0, 1)
        Image.fromarray(to_uint8(small)[0]).save(folder / f"{index:05d}.png")
    if index + 1 < count:
        raise ValueError(f"{source} has only {index + 1} frames, asked for {count}")


def run_case(frames_dir: Path, weights: Path, out: Path, args: argparse.Namespace, mode: str) -> dict:
    command = [
        sys.executable, "-m", "videoanyup.tasks.cli", "upscale", str(frames_dir), str(out), "--scale", str(args.scale),
        "--mode", mode, "--weights", str(weights), "--chunk", str(args.chunk), "--overlap", str(args.overlap),
        "--device", args.device, "--quiet", "--overwrite",
    ]
    result = json.loads(subprocess.run([sys.executable, "-c", MEASURE, *command], capture_output=True, text=True, check=True).stdout)
    if result["rc"] != 0:
        raise RuntimeError(f"upscale failed: {result['stderr']}")
    summary = json.loads(result["stdout"].strip().splitlines()[-1])
    return {"peak_mb": result["peak_kb"] / 1024, **summary}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", default=str(ROOT.parent / "shared" / "data" / "clips" / "bedroom"))
    parser.add_argument("--lr-size", default="135x240", help="HxW of the downscaled input (default 135x240)")
    parser.add_argument("--scale", type=float, default=4.0)
    parser.add_argument("--frames", default="50,200", help="frame counts of the lite cases (default 50,200)")
    parser.add_argument("--paper-frames", type=int, default=8, help="frames of the paper case (0: skip)")
    parser.add_argument("--chunk", type=int, default=32)
    parser.add_argument("--overlap", type=int, default=4)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "bench_upscale.json"))
    args = parser.parse_args()

    from videoanyup.models.basicavsr import BasicAVSR

    h, w = (int(v) for v in args.lr_size.lower().split("x"))
    counts = [int(c) for c in args.frames.split(",")]
    cases = [("lite", "bidirectional", n) for n in counts]
    if args.paper_frames:
        cases.append(("paper", "bidirectional", args.paper_frames))
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_upscale_") as tmp:
        tmp = Path(tmp)
        prepare_frames(Path(args.source), tmp / "all", max(n for *_, n in cases), (h, w))
        for name in {c[0] for c in cases}:
            BasicAVSR.from_config(name).save_pretrained(tmp / f"weights_{name}")
        for name, mode, count in cases:
            folder = tmp / f"frames_{count}"
            if not folder.exists():
                folder.mkdir()
                for png in sorted((tmp / "all").iterdir())[:count]:
                    (folder / png.name).symlink_to(png)
            result = run_case(folder, tmp / f"weights_{name}", tmp / "out.mp4", args, mode)
            rows.append({"config": name, "mode": mode, **result})
            print(f"done: {name} {mode} {count} frames, {result['frames_per_second']:.3f} frames/s, peak {result['peak_mb']:.0f} MB", file=sys.stderr)

    header = f"{'config':<7}{'mode':<15}{'frames':>7}{'input':>10}{'output':>10}{'s':>9}{'frames/s':>10}{'peak MB':>10}"
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r['config']:<7}{r['mode']:<15}{r['frames']:>7}{'x'.join(map(str, r['input'])):>10}"
              f"{'x'.join(map(str, r['output'])):>10}{r['seconds']:>9.1f}{r['frames_per_second']:>10.3f}{r['peak_mb']:>10.0f}")
    lite = [r for r in rows if r["config"] == "lite"]
    report = {"device": args.device, "chunk": args.chunk, "overlap": args.overlap, "cases": rows}
    if len(lite) >= 2:
        ratio = lite[-1]["peak_mb"] / lite[0]["peak_mb"]
        report["peak_ratio"] = ratio
        print(f"peak memory {lite[-1]['frames']} vs {lite[0]['frames']} frames: {ratio:.3f} (bounded if <= 1.15)")
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
