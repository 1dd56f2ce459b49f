"""Backbone feature extraction on the CPU: frames per second of every registered backbone (random weights).

Each case (backbone, frame size) runs in its own subprocess, so its peak resident memory (ru_maxrss) is its
own. Backbones are registered names or specs (`resnet50@s8`, `timm:NAME@LEVEL`; a bad one exits 2 naming
it). Frames are square `size`², at the defaults (224, 448) multiples of every registered backbone's size
multiple (14, 16, 32), so no resize is timed. The machine may be shared, so next to wall time the table
shows the process's CPU time divided by the thread count (what the run would take with the cores to
itself), and the load average when it started. Prints a table and writes JSON.

    python benchmarks/bench_backbones.py                                  # every backbone at 224² and 448²
    python benchmarks/bench_backbones.py --backbones dinov2_vits14 clip_vitb16 --sizes 224
    python benchmarks/bench_backbones.py --backbones resnet50@s8 timm:convnext_small.fb_in1k@s16 --sizes 224
    python benchmarks/bench_backbones.py --quick                          # a smoke run (56², 2 frames)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time
from pathlib import Path

from subprocess_case import spawn

DEFAULT_JSON = Path(__file__).parent / "results" / "bench_backbones.json"
SIZES = (224, 448)


def run_case(case: dict) -> dict:
    """One case in this process (the subprocess): timings, feature grid, parameter count and peak RSS."""
    import torch

    from videoanyup.backbones import build_backbone

    torch.set_num_threads(case["threads"])
    torch.manual_seed(0)
    backbone = build_backbone(case["backbone"], random=True, chunk=case["chunk"])
    size, frames = case["size"], case["frames"]
    video = torch.rand(1, frames, 3, size, size)
    times, cpu = [], []
    with torch.inference_mode():
        feats = backbone.extract(video[:, :1])  # warm-up at the timed size
        for _ in range(case["repeat"]):
            start_wall, start_cpu = time.perf_counter(), time.process_time()
            feats = backbone.extract(video)
            times.append(time.perf_counter() - start_wall)
            cpu.append(time.process_time() - start_cpu)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: kilobytes
    seconds, cpu_per_thread = min(times), min(cpu) / case["threads"]
    return dict(
        case,
        grid=list(feats.shape[-2:]),
        channels=feats.shape[2],
        stride=backbone.stride,
        params_m=sum(p.numel() for p in backbone.parameters()) / 1e6,
        seconds=seconds,
        fps=frames / seconds,
        cpu_fps=frames / cpu_per_thread,
        peak_gib=peak / 2**30,
        load=os.getloadavg()[0],
    )


def table(results: list[dict]) -> str:
    head = (
        f"{'backbone':24} {'size':>5} {'T':>3} {'stride':>6} {'grid':>7} {'C':>5} {'params M':>8} {'fps':>7} {'cpu fps':>8} "
        f"{'peak GiB':>8} {'load':>5}"
    )
    lines = [head, "-" * len(head)]
    for r in results:
        size = f"{r['size']}²"
        if "error" in r:
            lines.append(f"{r['backbone']:24} {size:>5} {r['frames']:>3} error: {r['error']}")
            continue
        grid = f"{r['grid'][0]}×{r['grid'][1]}"
        lines.append(
            f"{r['backbone']:24} {size:>5} {r['frames']:>3} {r['stride']:>6} {grid:>7} {r['channels']:>5} {r['params_m']:8.1f} "
            f"{r['fps']:7.2f} {r['cpu_fps']:8.2f} {r['peak_gib']:8.2f} {r['load']:5.1f}"
        )
    return "\n".join(lines)


def backbone_spec(text: str) -> str:
    """argparse type: a registered name or a spec, checked (a bad one exits 2 naming it)."""
    from videoanyup.backbones.spec import parse_backbone

    try:
        return parse_backbone(text).text
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from error


def main() -> None:
    from videoanyup.backbones import list_backbones

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--case", help=argparse.SUPPRESS)
    parser.add_argument("--backbones", nargs="*", type=backbone_spec,
                        help="registered names or specs (resnet50@s8, timm:NAME@LEVEL); default: every registered one")
    parser.add_argument("--sizes", nargs="*", type=int, default=list(SIZES), help="square frame sides in pixels")
    parser.add_argument("--frames", type=int, default=8, help="frames T per timed call")
    parser.add_argument("--chunk", type=int, default=8, help="frames per forward pass")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=2, help="timed runs per case (the fastest is reported)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 56² frames, T = 2, one repeat")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON)
    args = parser.parse_args()
    if args.case:
        print(json.dumps(run_case(json.loads(args.case))))
        return
    if args.quick:
        args.sizes, args.frames, args.repeat = [56], 2, 1
    results = []
    for size in args.sizes:
        for name in args.backbones or list_backbones():
            case = dict(
                backbone=name, size=size, frames=args.frames, chunk=args.chunk, threads=args.threads, repeat=args.repeat
            )
            results.append(spawn(__file__, case))
            print(table(results[-1:]).splitlines()[-1], flush=True)
    print()
    print(table(results))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(dict(results=results), indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
