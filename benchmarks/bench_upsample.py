"""VideoAnyUp on the CPU: time per frame and peak memory against bilinear interpolation.

Each case runs in its own subprocess, so its peak resident memory (ru_maxrss) is its own. The machine
may be shared, so next to wall time the table shows the process's CPU time divided by the thread count
(what the run would take with the cores to itself), and the load average when it started. Prints a
table and writes JSON.

    python benchmarks/bench_upsample.py                 # every grid to every output (the default cases)
    python benchmarks/bench_upsample.py --quick         # a smoke run
    python benchmarks/bench_upsample.py --json out.json --cases 32:448:1 73:1022:1
    python benchmarks/bench_upsample.py --temporal-targets   # the multi-frame targets (below)

`--compiled` streams each case's frames through `VideoAnyUp.stream(mode=..., compile=...)`, eager and compiled
(inductor, which generates C++ on the CPU), in one process: the seconds the first frames take (they compile:
one variant per count of previous states and neighbours) and the time per frame after them, with the largest
difference between the two outputs. Small sizes: compiling takes minutes on this CPU.

    python benchmarks/bench_upsample.py --compiled --mode unidirectional --cases 16:112:8 --threads 1

`--temporal-targets` runs the cases of the multi-frame network's targets: 32²×C → 448², T = 8, in
`perframe` and in `bidirectional` mode (time per frame, ratio ≤ 2×); 73² → 1022², T = 1 (peak ≤ 4 GiB); and a
unidirectional stream of 32² → 448² frames at T = 10 and T = 50 (peak within 10 %: memory flat in T). The
stream cases make each frame's input inside the loop and drop each output, so the input clip does not count;
each runs in `--memory-runs` processes (3) and the median peak is compared (every process's peak is kept in the
JSON as `peaks_gib`, so one allocator history cannot decide the check).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time
from pathlib import Path

from subprocess_case import spawn

DEFAULT_JSON = Path(__file__).parent / "results" / "bench_upsample.json"
GRIDS, OUTPUTS = (16, 32, 64), (224, 448, 896)


def default_cases() -> list[tuple[int, int, int]]:
    """(grid, output, frames): every grid to every output, one frame; T = 8 where the output fits in RAM."""
    cases = [(g, o, 1) for g in GRIDS for o in OUTPUTS] + [(73, 1022, 1)]
    cases += [(g, o, 8) for g in GRIDS for o in OUTPUTS if o <= 448]
    return cases


def compiled_case(case: dict) -> dict:
    """A stream of `frames` frames, eager then `compile=True`: first-frames seconds, ms per frame after them."""
    import torch

    from videoanyup.models.videoanyup import VideoAnyUp

    torch.set_num_threads(case["threads"])
    torch.manual_seed(0)
    g, o, t, c = case["grid"], case["output"], case["frames"], case["channels"]
    warm = case["warm"]
    model = VideoAnyUp.from_config(case["config"]).eval()
    generator = torch.Generator().manual_seed(0)
    feats, video = torch.randn(1, t, c, g, g, generator=generator), torch.rand(1, t, 3, o, o, generator=generator)
    result, outputs = dict(case), {}
    for name, option in (("eager", False), ("compiled", True)):
        stream = model.stream(mode=case["mode"], compile=option)
        start = time.perf_counter()
        first = [out for s in range(warm) for out in stream.push(feats[:, s], video[:, s])]
        result[f"{name}_first_s"] = time.perf_counter() - start
        start, cpu = time.perf_counter(), time.process_time()
        rest = [out for s in range(warm, t) for out in stream.push(feats[:, s], video[:, s])]
        result[f"{name}_ms_per_frame"] = 1000 * (time.perf_counter() - start) / (t - warm)
        result[f"{name}_cpu_ms_per_frame"] = 1000 * (time.process_time() - cpu) / (t - warm) / case["threads"]
        outputs[name] = torch.stack(first + rest + stream.flush(), dim=1)
    result["max_abs_difference"] = float((outputs["compiled"] - outputs["eager"]).abs().max())
    result["peak_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 2**30
    result["load"] = os.getloadavg()[0]
    return result


def compiled_table(results: list[dict]) -> str:
    head = (f"{'config':9} {'mode':>14} {'grid':>5} {'output':>6} {'T':>2} {'eager ms/fr':>11} {'compiled ms/fr':>14} "
            f"{'first frames s (eager / compiled)':>34} {'max |diff|':>10} {'load':>5}")
    lines = [head, "-" * len(head)]
    for r in results:
        if "error" in r:
            lines.append(f"{r['config']:9} {r['mode']:>14} {r['grid']:>4}² {r['output']:>5}² {r['frames']:>2} error: {r['error']}")
            continue
        lines.append(
            f"{r['config']:9} {r['mode']:>14} {r['grid']:>4}² {r['output']:>5}² {r['frames']:>2} "
            f"{r['eager_ms_per_frame']:11.1f} {r['compiled_ms_per_frame']:14.1f} "
            f"{r['eager_first_s']:16.1f} / {r['compiled_first_s']:<15.1f} {r['max_abs_difference']:10.1e} {r['load']:5.1f}"
        )
    return "\n".join(lines)


def run_case(case: dict) -> dict:
    """One case in this process (the subprocess): returns timings and the peak RSS."""
    import torch
    import torch.nn.functional as F

    if case["method"] == "compiled":
        return compiled_case(case)

    torch.set_num_threads(case["threads"])
    torch.manual_seed(0)
    g, o, t, c = case["grid"], case["output"], case["frames"], case["channels"]
    times, cpu = [], []
    if case["method"] != "stream":  # a stream makes each frame's input in its loop: no clip is held
        feats, video = torch.randn(1, t, c, g, g), torch.rand(1, t, 3, o, o)
    if case["method"] == "stream":
        from videoanyup.models.videoanyup import VideoAnyUp

        model = VideoAnyUp.from_config(case["config"]).eval()

        def run():
            stream = model.stream(mode=case["mode"])
            generator = torch.Generator().manual_seed(0)
            for _ in range(t):
                frame_feats = torch.randn(1, c, g, g, generator=generator)
                frame = torch.rand(1, 3, o, o, generator=generator)
                for out in stream.push(frame_feats, frame):
                    del out
            stream.flush()

    elif case["method"] == "bilinear":
        run = lambda: F.interpolate(feats[0], size=(o, o), mode="bilinear", align_corners=False)  # noqa: E731
    else:
        from videoanyup.api import upsample
        from videoanyup.models.videoanyup import VideoAnyUp

        model = VideoAnyUp.from_config(case["config"]).eval()  # built outside inference mode
        upsample(torch.randn(1, 1, c, 8, 8), torch.rand(1, 1, 3, 112, 112), model=model)  # warm-up
        run = lambda: upsample(feats, video, model=model, mode=case["mode"])  # noqa: E731
    with torch.inference_mode():
        for _ in range(case["repeat"]):
            start_wall, start_cpu = time.perf_counter(), time.process_time()
            out = run()
            times.append(time.perf_counter() - start_wall)
            cpu.append(time.process_time() - start_cpu)
            del out
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: kilobytes
    return dict(
        case,
        seconds=min(times),
        seconds_per_frame=min(times) / t,
        cpu_seconds_per_thread=min(cpu) / case["threads"],
        peak_gib=peak / 2**30,
        load=os.getloadavg()[0],
    )


def median_peak(runs: list[dict]) -> dict:
    """One result from identical cases run in separate processes: the run of median peak memory, with every
    run's peak listed (`peaks_gib`); an error if any run failed."""
    failed = [r for r in runs if "error" in r]
    if failed:
        return failed[0]
    ordered = sorted(runs, key=lambda r: r["peak_gib"])
    return dict(ordered[len(ordered) // 2], peaks_gib=[r["peak_gib"] for r in runs])


def table(results: list[dict]) -> str:
    head = (f"{'method':10} {'mode':>14} {'grid':>5} {'output':>6} {'T':>2} {'s/frame':>8} {'cpu s/fr':>8} "
            f"{'peak GiB':>8} {'load':>5}")
    lines = [head, "-" * len(head)]
    for r in results:
        size = f"{r['grid']}²", f"{r['output']}²"
        mode = "" if r["method"] == "bilinear" else r.get("mode", "")
        if "error" in r:
            lines.append(f"{r['method']:10} {mode:>14} {size[0]:>5} {size[1]:>6} {r['frames']:>2} error: {r['error']}")
            continue
        lines.append(
            f"{r['method']:10} {mode:>14} {size[0]:>5} {size[1]:>6} {r['frames']:>2} {r['seconds_per_frame']:8.3f} "
            f"{r['cpu_seconds_per_thread'] / r['frames']:8.3f} {r['peak_gib']:8.2f} {r['load']:5.1f}"
        )
    return "\n".join(lines)


def checks(results: list[dict]) -> list[str]:
    """The targets of the issues, where the cases ran."""
    found = {(r["method"], r["grid"], r["output"], r["frames"]): r for r in results if "error" not in r}
    by_mode = {(r["method"], r.get("mode"), r["grid"], r["output"], r["frames"]): r for r in results if "error" not in r}
    lines = []
    per, bi = by_mode.get(("videoanyup", "perframe", 32, 448, 8)), by_mode.get(("videoanyup", "bidirectional", 32, 448, 8))
    if per and bi:
        ratio = bi["cpu_seconds_per_thread"] / per["cpu_seconds_per_thread"]
        lines.append(
            f"32²→448², T = 8: bidirectional / perframe CPU time per frame {ratio:.2f}× (target ≤ 2×): "
            f"{'ok' if ratio <= 2 else 'MISSED'}"
        )
    short, long = found.get(("stream", 32, 448, 10)), found.get(("stream", 32, 448, 50))
    if short and long:
        growth = long["peak_gib"] / short["peak_gib"] - 1
        lines.append(
            f"stream peak T = 50 vs T = 10: {long['peak_gib']:.2f} / {short['peak_gib']:.2f} GiB, {100 * growth:+.1f} % "
            f"(target within 10 %): {'ok' if abs(growth) <= 0.10 else 'MISSED'}"
        )
    big = found.get(("videoanyup", 73, 1022, 1))
    if big:
        ok = big["peak_gib"] <= 4 and big["seconds"] <= 30
        lines.append(
            f"73²→1022²: {big['seconds']:.1f} s wall, {big['cpu_seconds_per_thread']:.1f} s CPU/thread, "
            f"{big['peak_gib']:.2f} GiB at load {big['load']:.1f} (target ≤ 30 s, ≤ 4 GiB): {'ok' if ok else 'MISSED'}"
        )
    a, b = found.get(("videoanyup", 64, 896, 1)), found.get(("videoanyup", 32, 896, 1))
    if a and b:
        ratio = a["cpu_seconds_per_thread"] / b["cpu_seconds_per_thread"]
        verdict = "ok" if ratio <= 2 else "MISSED"
        lines.append(f"64²→896² / 32²→896² CPU time: {ratio:.2f}× (target ≤ 2×): {verdict}")
    mid = found.get(("videoanyup", 32, 448, 1))
    if mid:
        wall, cpu = mid["seconds"], mid["cpu_seconds_per_thread"]
        lines.append(
            f"32²→448²: {wall:.2f} s wall ({'ok' if wall <= 2 else 'MISSED'}), {cpu:.2f} s CPU/thread "
            f"({'ok' if cpu <= 2 else 'MISSED'}) at load {mid['load']:.1f} (target ≤ 2 s, aim 1 s)"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--case", help=argparse.SUPPRESS)
    parser.add_argument("--cases", nargs="*", help="grid:output:frames triples (default: every grid to every output)")
    parser.add_argument("--quick", action="store_true", help="two small cases")
    parser.add_argument("--channels", type=int, default=384)
    parser.add_argument("--config", default="default")
    parser.add_argument("--mode", default="bidirectional")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=2, help="runs per case (the fastest is reported)")
    parser.add_argument("--no-bilinear", action="store_true")
    parser.add_argument("--temporal-targets", action="store_true", help="the multi-frame targets (module docstring)")
    parser.add_argument(
        "--memory-runs", type=int, default=3, help="--temporal-targets: processes per stream case (median peak)"
    )
    parser.add_argument("--compiled", action="store_true", help="streams, eager vs torch.compile (module docstring)")
    parser.add_argument("--warm", type=int, default=3, help="--compiled: frames that compile, not timed (default 3)")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON)
    args = parser.parse_args()
    if args.case:
        print(json.dumps(run_case(json.loads(args.case))))
        return
    if args.quick:
        triples = [(16, 224, 1), (16, 224, 8)]
    elif args.cases:
        triples = [tuple(int(v) for v in text.split(":")) for text in args.cases]
    else:
        triples = default_cases()
    results = []
    if args.compiled:
        for grid, output, frames in triples:
            case = dict(
                method="compiled", grid=grid, output=output, frames=frames, channels=args.channels, config=args.config,
                mode=args.mode, threads=args.threads, warm=args.warm,
            )
            results.append(spawn(__file__, case))
            print(compiled_table(results[-1:]).splitlines()[-1], flush=True)
        print()
        print(compiled_table(results))
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(dict(results=results), indent=2) + "\n")
        print(f"wrote {args.json}")
        return
    if args.temporal_targets:
        plan = [("videoanyup", "perframe", 32, 448, 8), ("videoanyup", "bidirectional", 32, 448, 8),
                ("videoanyup", args.mode, 73, 1022, 1), ("stream", "unidirectional", 32, 448, 10),
                ("stream", "unidirectional", 32, 448, 50)]
        triples = []
        for method, mode, grid, output, frames in plan:
            case = dict(
                method=method, grid=grid, output=output, frames=frames, channels=args.channels, config=args.config,
                mode=mode, threads=args.threads, repeat=1 if output * output * frames > 2_000_000 else args.repeat,
            )
            if method == "stream":  # the median of identical processes' peaks
                runs = [spawn(__file__, case) for _ in range(args.memory_runs)]
                results.append(median_peak(runs))
            else:
                results.append(spawn(__file__, case))
            print(table(results[-1:]).splitlines()[-1], flush=True)
    for grid, output, frames in triples:
        methods = ["videoanyup"] + ([] if args.no_bilinear else ["bilinear"])
        for method in methods:
            case = dict(
                method=method, grid=grid, output=output, frames=frames, channels=args.channels, config=args.config,
                mode=args.mode, threads=args.threads, repeat=1 if output * output * frames > 2_000_000 else args.repeat,
            )
            results.append(spawn(__file__, case))
            print(table(results[-1:]).splitlines()[-1], flush=True)
    print()
    print(table(results))
    for line in checks(results):
        print(line)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(dict(results=results, checks=checks(results)), indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
