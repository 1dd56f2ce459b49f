"""BasicAVSR on the CPU: frames per second, peak memory, the kernel branch's share, streaming memory.

Every case runs in its own subprocess so that its peak resident memory (ru_maxrss) is its own. Prints a
table and writes JSON.

    python benchmarks/bench_basicavsr.py                      # the full grid of the issue
    python benchmarks/bench_basicavsr.py --quick              # a small smoke run
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

MODES = ("bidirectional", "unidirectional", "lookahead")


def run_case(case: dict) -> dict:
    """Run one case in this process (called in the subprocess)."""
    import torch

    from videoanyup import BasicAVSR
    from videoanyup.functional.grid import axis_phases, output_size

    torch.set_num_threads(case["threads"])
    torch.manual_seed(0)
    model = BasicAVSR.from_config(case["config"]).eval()
    h, w = case["lr"]
    kernel = model.upsampler.kernel
    spent = {"kernel": 0.0}
    original_forward = kernel.forward

    def timed_kernel(lr_size, hr_size, region=None):
        start = time.perf_counter()
        if case.get("kernel") == "per_pixel":  # no cache: the hyper-network at every HR pixel of the tile
            top, bottom, left, right = region
            rows = axis_phases(lr_size[0], hr_size[0], top, bottom)
            cols = axis_phases(lr_size[1], hr_size[1], left, right)
            code = (2.0 * lr_size[0] / hr_size[0], 2.0 * lr_size[1] / hr_size[1])
            out = kernel.compute(code, rows.offset, cols.offset).permute(2, 3, 0, 1)
        else:
            out = original_forward(lr_size, hr_size, region)
        spent["kernel"] += time.perf_counter() - start
        return out

    kernel.forward = timed_kernel
    upsampler = model.upsampler
    original_phase_convolution = upsampler._phase_convolution

    def timed_phase_convolution(lr_size, hr_size):  # builds the per-phase kernels (cached per grid)
        start = time.perf_counter()
        out = original_phase_convolution(lr_size, hr_size)
        spent["kernel"] += time.perf_counter() - start
        return out

    upsampler._phase_convolution = timed_phase_convolution
    if case.get("kernel") == "per_pixel":
        upsampler.phase_convolution = False  # every HR pixel through the literal path
    result = dict(case)
    with torch.no_grad():
        if case.get("stream"):
            stream = model.stream(scale=case["scale"], mode=case["mode"])
            start = time.perf_counter()
            for _ in range(case["frames"]):
                stream.push(torch.rand(1, 3, h, w))
            stream.flush()
        else:
            lr = torch.rand(1, case["frames"], 3, h, w)
            model(lr[:, :2], scale=case["scale"], mode=case["mode"])  # warm-up
            spent["kernel"] = 0.0
            start = time.perf_counter()
            model(lr, scale=case["scale"], mode=case["mode"])
    elapsed = time.perf_counter() - start
    result["hr"] = output_size(h, w, scale=case["scale"])
    result["seconds"] = elapsed
    result["fps"] = case["frames"] / elapsed
    result["kernel_share"] = spent["kernel"] / elapsed
    result["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return result


def spawn(case: dict) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--case", json.dumps(case)], check=True, capture_output=True, text=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def cases(quick: bool, threads: int, parts: set[str]) -> list[dict]:
    grid: list[dict] = []
    configs = ["lite"] if quick else ["lite", "paper"]
    sizes = [(64, 64)] if quick else [(64, 64), (180, 320)]
    scales = [2.0] if quick else [2.0, 4.0, 3.7]
    for config in configs if "grid" in parts else []:
        for lr in sizes:
            for scale in scales:
                for mode in MODES:
                    grid.append(dict(config=config, lr=lr, scale=scale, mode=mode, frames=10, threads=threads))
    # the kernel branch with and without the cache (×4 and ×3.7)
    for config in configs if "kernel" in parts else []:
        for scale in ([4.0] if quick else [4.0, 3.7]):
            grid.append(dict(config=config, lr=sizes[-1], scale=scale, mode="unidirectional", frames=3, threads=threads, kernel="per_pixel"))
            grid.append(dict(config=config, lr=sizes[-1], scale=scale, mode="unidirectional", frames=3, threads=threads, kernel="cached"))
    # streaming memory: T = 10 vs T = 50
    for frames in (10, 50) if "stream" in parts else ():
        grid.append(dict(config="lite", lr=sizes[-1], scale=4.0, mode="lookahead", frames=frames, threads=threads, stream=True))
    return grid


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="a small smoke run")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--parts", default="grid,kernel,stream", help="comma list of grid, kernel, stream")
    parser.add_argument("--config", help="only this configuration (lite or paper)")
    parser.add_argument("--lr", help="only this LR size, e.g. 64x64")
    parser.add_argument("--scale", type=float, help="only this scale")
    parser.add_argument("--json", default="benchmarks/results/bench_basicavsr.json")
    args = parser.parse_args()
    if args.case:
        print(json.dumps(run_case(json.loads(args.case))))
        return

    results = []
    header = f"{'config':6} {'LR':>8} {'HR':>10} {'scale':>5} {'mode':14} {'T':>3} {'kernel':9} {'fps':>7} {'s/frame':>8} {'kernel %':>8} {'peak MiB':>9}"
    print(header)
    print("-" * len(header))
    selected = [
        case
        for case in cases(args.quick, args.threads, set(args.parts.split(",")))
        if (args.config is None or case["config"] == args.config)
        and (args.lr is None or "x".join(map(str, case["lr"])) == args.lr)
        and (args.scale is None or case["scale"] == args.scale)
    ]
    for case in selected:
        r = spawn(case)
        results.append(r)
        kind = "stream" if r.get("stream") else r.get("kernel", "cached")
        print(
            f"{r['config']:6} {r['lr'][0]:>3}x{r['lr'][1]:<4} {r['hr'][0]:>4}x{r['hr'][1]:<5} {r['scale']:>5} {r['mode']:14} "
            f"{r['frames']:>3} {kind:9} {r['fps']:7.2f} {1 / r['fps']:8.3f} {100 * r['kernel_share']:7.1f}% {r['peak_rss_mib']:9.0f}",
            flush=True,
        )
    streams = [r for r in results if r.get("stream")]
    if len(streams) == 2:
        ratio = streams[1]["peak_rss_mib"] / streams[0]["peak_rss_mib"]
        print(f"\nstreaming peak memory, T = {streams[1]['frames']} vs T = {streams[0]['frames']}: {ratio:.3f}x")
    path = Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
