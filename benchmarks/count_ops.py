"""Dispatched ATen operations and host scalar reads per frame: a CPU proxy for GPU kernel launches.

On a GPU, BasicAVSR and VideoAnyUp are bound by how many small kernels they launch, and a host read of a
device scalar (`.item()`, `int(t)`, `bool(t)`, …) stalls the launch queue. Both are counted here on the CPU
with a `TorchDispatchMode`, below autograd, so every count is what a device would be asked to run:

- **ops**: every ATen operation that reaches the dispatcher, except views (slices, reshapes that need no
  copy, transposes, …: `OpOverload.is_view`), allocations without a kernel (`empty`, `empty_strided`) and
  the host scalar reads themselves;
- **host reads**: calls of `aten._local_scalar_dense`, which every `.item()`, `int(tensor)`,
  `float(tensor)` and `bool(tensor)` goes through.

Per frame means in steady state, with every cache warm: clips of T = 1, 2 and 3 run first (kernel caches,
memoised grids, and VideoAnyUp's attention blocks, which are made once per grid and frames per call), then
clips of T = 2 and T = 3 are counted and the figure is their difference — the work one more
frame adds once the recurrence has two previous states. Batched work (SPyNet over all frame pairs at once,
the frequency prior) adds no dispatches for one more frame and is, rightly, not in that figure.

    python benchmarks/count_ops.py                           # lite and paper at ×2, ×3.7, ×4, ×2.5×3.5; VideoAnyUp
    python benchmarks/count_ops.py --models lite --json benchmarks/results/count_ops.json
    python benchmarks/count_ops.py --models videoanyup --videoanyup-configs default,large
    python benchmarks/count_ops.py --models videoanyup --query-tile 65536     # a GPU's default block size

Random `paper` weights, the bundled `lite` and VideoAnyUp `default` weights, random weights of the other
VideoAnyUp configurations (e.g. `large`); counts do not depend on the weights. Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode

HOST_READ = torch.ops.aten._local_scalar_dense.default
NO_KERNEL = {torch.ops.aten.empty.memory_format, torch.ops.aten.empty_strided.default}


class OpCounter(TorchDispatchMode):
    """Counts dispatched ATen operations (views and bare allocations excluded) and host scalar reads."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: Counter[str] = Counter()
        self.host_reads = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is HOST_READ:
            self.host_reads += 1
        elif not (func.is_view or func in NO_KERNEL):
            self.ops[str(func.overloadpacket.__name__)] += 1
        return func(*args, **(kwargs or {}))

    @property
    def total(self) -> int:
        return sum(self.ops.values())


def count(run) -> OpCounter:
    counter = OpCounter()
    with torch.no_grad(), counter:
        run()
    return counter


def per_frame(run_clip) -> dict:
    """Steady-state counts of one more frame: `run_clip(T)` for T = 1, 2, 3 (warm-up), then 2 and 3 counted."""
    start = time.perf_counter()
    with torch.no_grad():
        for t in (1, 2, 3):
            run_clip(t)
    two, three = count(lambda: run_clip(2)), count(lambda: run_clip(3))
    top = (three.ops - two.ops).most_common(8)
    return {
        "ops": three.total - two.total,
        "host_reads": three.host_reads - two.host_reads,
        "top_ops": top,
        "seconds": time.perf_counter() - start,
    }


def basicavsr_case(model_name: str, scale, lr_size: tuple[int, int], mode: str) -> dict:
    from videoanyup import BasicAVSR

    torch.manual_seed(0)
    if model_name == "lite":
        model = BasicAVSR.from_pretrained("lite")  # the bundled weights
    else:
        model = BasicAVSR.from_config(model_name)
    model.eval()
    clip = torch.rand(1, 3, 3, *lr_size)
    result = per_frame(lambda t: model(clip[:, :t], scale=scale, mode=mode))
    return {"model": f"basicavsr-{model_name}", "scale": scale, "lr": list(lr_size), "mode": mode} | result


def videoanyup_case(lr: int, hr: int, channels: int, config: str = "default", query_tile: int | None = None) -> dict:
    """VideoAnyUp `lr`² → `hr`²: the bundled weights for "default", random weights of `CONFIGS[config]`
    otherwise (counts do not depend on the weights). `query_tile`: None for the CPU's default."""
    from videoanyup import VideoAnyUp

    torch.manual_seed(0)
    model = (VideoAnyUp.from_pretrained("default") if config == "default" else VideoAnyUp.from_config(config)).eval()
    feats, video = torch.randn(1, 3, channels, lr, lr), torch.rand(1, 3, 3, hr, hr)
    result = per_frame(lambda t: model(feats[:, :t], video[:, :t], query_tile=query_tile))
    name = f"videoanyup-{config}" + ("" if query_tile is None else f"-tile{query_tile}")
    return {"model": name, "scale": hr / lr, "lr": [lr, lr], "mode": model.config.mode, "query_tile": query_tile} | result


def parse_scale(text: str):
    parts = [float(p) for p in text.split("x")]
    return parts[0] if len(parts) == 1 else tuple(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="lite,paper,videoanyup", help="comma list of lite, paper, videoanyup")
    parser.add_argument("--scales", default="2,3.7,4,2.5x3.5", help="BasicAVSR scales; AxB for asymmetric")
    parser.add_argument("--lr", type=int, nargs=2, default=(180, 320), metavar=("h", "w"))
    parser.add_argument("--mode", default="bidirectional")
    parser.add_argument(
        "--videoanyup-configs", default="default",
        help="VideoAnyUp configurations: default (bundled weights) and names of CONFIGS (random weights)",
    )
    parser.add_argument(
        "--query-tile", type=int, default=None,
        help="VideoAnyUp's HR queries per attention block (default: the CPU's; window_attention.ACCELERATOR_QUERY_TILE "
        "is what a GPU runs)",
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, default=Path(__file__).parent / "results" / "count_ops.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    models = args.models.split(",")
    rows = []
    header = f"{'model':30} {'scale':>9} {'LR':>8} {'mode':14} {'ops/frame':>10} {'host reads/frame':>17} {'s':>6}"
    print(header)
    print("-" * len(header))
    for name in models:
        if name == "videoanyup":
            cases = [lambda c=c: videoanyup_case(32, 448, 384, c, args.query_tile) for c in args.videoanyup_configs.split(",")]
        else:
            cases = [lambda s=s: basicavsr_case(name, parse_scale(s), tuple(args.lr), args.mode) for s in args.scales.split(",")]
        for case in cases:
            row = case()
            rows.append(row)
            scale = "x".join(f"{v:g}" for v in row["scale"]) if isinstance(row["scale"], tuple) else f"{row['scale']:g}"
            print(
                f"{row['model']:30} {'×' + scale:>9} {row['lr'][0]:>3}x{row['lr'][1]:<4} {row['mode']:14} "
                f"{row['ops']:>10} {row['host_reads']:>17} {row['seconds']:6.1f}",
                flush=True,
            )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"torch": torch.__version__, "threads": args.threads, "rows": rows}, indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
