"""Where one BasicAVSR forward spends its time: the top operators by self time and the kernel-launch count.

On an H200 the lite and paper networks run at about the same ms per frame, in fp32 as in bf16
(docs/bench_cuda_h200.json): the cost is not arithmetic. This profile says which operators and how many
launches it is. CPU or CUDA (`--device`); prints a table and writes JSON.

    python benchmarks/profile_basicavsr.py --device cuda --scale 4 --frames 8 --json benchmarks/results/profile.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from videoanyup.models.basicavsr import BasicAVSR


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="lite", help="BasicAVSR configuration (random weights: speed only)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--scale", type=float, default=4.0)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--size", type=int, nargs=2, default=(180, 320), metavar=("H", "W"), help="LR frame size")
    parser.add_argument("--mode", default="bidirectional")
    parser.add_argument("--top", type=int, default=20)
    parser.add_argument("--json", type=Path, default=Path(__file__).parent / "results" / "profile_basicavsr.json")
    args = parser.parse_args()
    device = torch.device(args.device)
    net = BasicAVSR.from_config(args.config).eval().to(device)
    lr = torch.rand(1, args.frames, 3, *args.size, device=device)
    cuda = device.type == "cuda"

    def run() -> None:
        with torch.no_grad():
            net(lr, scale=args.scale, mode=args.mode)
        if cuda:
            torch.cuda.synchronize()

    run()  # warm-up (cuDNN autotuning, allocator)
    wall = []
    for _ in range(3):
        start = time.perf_counter()
        run()
        wall.append(time.perf_counter() - start)
    ms_per_frame = 1000 * min(wall) / args.frames
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities) as prof:
        run()
    events = prof.key_averages()
    key = "self_device_time_total" if cuda else "self_cpu_time_total"
    rows = sorted(events, key=lambda e: getattr(e, key, 0), reverse=True)[: args.top]
    table = [
        {"op": e.key, "calls": e.count, "self_cpu_ms": e.self_cpu_time_total / 1e3,
         "self_device_ms": getattr(e, "self_device_time_total", 0) / 1e3}
        for e in rows
    ]
    launches = sum(e.count for e in events if e.key in ("cudaLaunchKernel", "cuLaunchKernel", "cudaLaunchKernelExC"))
    device_to_host = sum(e.count for e in events if e.key.startswith("Memcpy DtoH"))
    total_cpu = sum(e.self_cpu_time_total for e in events) / 1e3
    total_device = sum(getattr(e, "self_device_time_total", 0) for e in events) / 1e3
    print(f"BasicAVSR {args.config}, {args.frames} × {args.size[0]}×{args.size[1]} → ×{args.scale}, {args.mode}, {device}")
    print(f"{ms_per_frame:.1f} ms per frame (best of 3, unprofiled); profiled: self CPU time {total_cpu:.1f} ms, "
          f"self device time {total_device:.1f} ms, kernel launches {launches}, device-to-host copies {device_to_host}")
    print(f"{'operator':44s} {'calls':>7s} {'self CPU ms':>12s} {'self GPU ms':>12s}")
    for row in table:
        print(f"{row['op'][:44]:44s} {row['calls']:7d} {row['self_cpu_ms']:12.2f} {row['self_device_ms']:12.2f}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({
        "config": args.config, "device": str(device), "scale": args.scale, "frames": args.frames, "size": args.size,
        "mode": args.mode, "ms_per_frame": ms_per_frame, "device_to_host_copies": device_to_host, "self_cpu_ms": total_cpu, "self_device_ms": total_device, "kernel_launches": launches,
        "top": table,
    }, indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
