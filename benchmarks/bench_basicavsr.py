"""BasicAVSR on the CPU: frames per second, peak memory, the kernel branch's share, streaming memory, eager vs
`torch.compile` (the streamed per-frame step, `BasicAVSR.stream(compile=True)`).

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
    from videoanyup.functional.grid import output_size

    torch.set_num_threads(case["threads"])
    torch.manual_seed(0)
    model = BasicAVSR.from_config(case["config"]).eval()
    h, w = case["lr"]
    upsampler = model.upsampler
    spent = {"kernel": 0.0}
    original_grid_table = upsampler.grid_table
    original_kernels_of_phases = upsampler.kernel.kernels_of_phases

    def timed(function):
        def run(*args):
            start = time.perf_counter()
            out = function(*args)
            spent["kernel"] += time.perf_counter() - start
            return out

        return run

    # The kernel branch: the grid's kernel tables (cached per grid) or the kernels of each tile's phases.
    upsampler.grid_table = timed(original_grid_table)
    upsampler.kernel.kernels_of_phases = timed(original_kernels_of_phases)
    if case.get("kernel") == "per_tile":
        upsampler.kernel.cache_limit = 0  # no grid cache: every tile computes the kernels of its phases
    if case.get("compiled"):
        return compiled_case(case, model)
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


def compiled_case(case: dict, model) -> dict:
    """Streaming (unidirectional), eager and `compile=True`: ms per frame after the compiled variants exist."""
    import torch

    h, w = case["lr"]
    clip = torch.rand(1, case["frames"], 3, h, w)
    result = dict(case)
    outputs = {}
    with torch.no_grad():
        for name, option in (("eager", False), ("compiled", True)):
            stream = model.stream(scale=case["scale"], mode="unidirectional", compile=option)
            start = time.perf_counter()
            warm = [stream.push(clip[:, t])[0] for t in range(3)]  # three step variants: 0, 1, 2 previous states
            result[f"{name}_first_3_s"] = time.perf_counter() - start
            start = time.perf_counter()
            rest = [stream.push(clip[:, t])[0] for t in range(3, case["frames"])]
            result[f"{name}_ms_per_frame"] = 1000 * (time.perf_counter() - start) / (case["frames"] - 3)
            outputs[name] = torch.stack(warm + rest, dim=1)
    result["max_abs_difference"] = float((outputs["compiled"] - outputs["eager"]).abs().max())
    result["hr"] = list(outputs["eager"].shape[-2:])
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
    # the kernel branch with and without the grid cache (×4 and ×3.7)
    for config in configs if "kernel" in parts else []:
        for scale in ([4.0] if quick else [4.0, 3.7]):
            grid.append(dict(config=config, lr=sizes[-1], scale=scale, mode="unidirectional", frames=3, threads=threads, kernel="per_tile"))
            grid.append(dict(config=config, lr=sizes[-1], scale=scale, mode="unidirectional", frames=3, threads=threads, kernel="cached"))
    # torch.compile: the streamed per-frame step, eager vs compiled (inductor), small frames
    for config in configs if "compile" in parts else []:
        for scale in ([4.0] if quick else [4.0, 3.7]):
            grid.append(dict(config=config, lr=(64, 64), scale=scale, mode="unidirectional", frames=8, threads=threads, compiled=True))
    # streaming memory: T = 10 vs T = 50
    for frames in (10, 50) if "stream" in parts else ():
        grid.append(dict(config="lite", lr=sizes[-1], scale=4.0, mode="lookahead", frames=frames, threads=threads, stream=True))
    return grid


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="a small smoke run")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--parts", default="grid,kernel,stream,compile", help="comma list of grid, kernel, stream, compile")
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
        if r.get("compiled"):
            print(
                f"{r['config']:6} {r['lr'][0]:>3}x{r['lr'][1]:<4} {r['hr'][0]:>4}x{r['hr'][1]:<5} {r['scale']:>5} stream, eager "
                f"{r['eager_ms_per_frame']:.0f} ms/frame, compiled {r['compiled_ms_per_frame']:.0f} ms/frame "
                f"(first 3 frames {r['eager_first_3_s']:.1f} s / {r['compiled_first_3_s']:.1f} s), max |diff| {r['max_abs_difference']:.1e}",
                flush=True,
            )
            continue
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
