"""How much can the neighbouring frames add to the fidelity of clean frames? Ceilings beside the network.

Issue 16 asks `bidirectional` to beat `perframe` by +0.01 in fidelity on clean held-out clips. The fidelity
target of frame t (`tasks/probes/fidelity.py`) is the backbone on frame t's own bicubic 2× upscale, a
function of frame t's pixels alone; a neighbour can only help where it samples frame t's content at places
frame t's patch grid does not (sub-patch motion). This script measures what the neighbours carry, with no
parameter fitted, on the same clips, seeds and frames as the probe. Every score is the mean over all frames
of the cosine to the target on its grid 2g (twice the LR grid), so every row is comparable:

- `bilinear`, `perframe`, `bidirectional`: the LR features bilinearly upsampled, and the network (--weights).
- `ensemble_perframe`: the per-frame outputs of t and of t±1, t±2, the neighbours' warped to t with fine
  flows (SPyNet at the output size, `VideoAnyUp.fine_flow`), averaged where the warped point is in the frame.
  What averaging aligned single-frame predictions gives.
- `kr_single` / `kr_multi`: Nadaraya–Watson kernel regression of the raw LR vectors at the target's cell
  centres: Gaussian weights (σ = half an LR cell) of the 3 × 3 nearest LR cells of frame t (`single`), and
  also of each neighbour t±1, t±2 at the point the fine flow carries the target cell to (`multi`), each
  neighbour sample placed at its true sub-cell offset. `mix_*`: 0.8 · perframe + 0.2 · kr (a convex mix;
  `mix_single` is the control: what the smoothing alone gives).
- `dense_ideal` / `dense_net`: the ideal multi-frame case. The backbone on frame t itself shifted by ∓ a quarter
  patch in x and y (4 grids interleaved into one with stride p/2, centred on the target's cells): what perfectly
  aligned neighbours moved by half a patch, with unchanged content, would give. `dense_ideal` upsamples it
  bilinearly (compare `bilinear`), `dense_net` feeds it to the network per frame as a grid twice as fine
  (compare `perframe`): what such neighbours could be worth through this network, untrained for it.
- `kr_net_single` / `kr_net_multi`: the real counterpart of `dense_net`: the kernel regression at the target's
  cells (σ = 0.3 cell), of frame t alone or with t±1, t±2, fed to the network per frame as a grid twice as fine.
- `subcell_1` / `subcell_2`: the fraction of pixels whose fine flow to t±1 (t±2) moves them by more than a
  quarter cell from a whole number of cells in x or y (the pixels on which a neighbour samples anew).

    python benchmarks/bench_neighbour_ceiling.py                       # held-out sequences, seeds 1–3
    python benchmarks/bench_neighbour_ceiling.py --seqs camel,cows --seeds 1 --json /tmp/ceiling.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from bench_corrupted_frame import add_clip_arguments

DEFAULT_JSON = Path(__file__).parent / "results_issue16" / "bench_neighbour_ceiling.json"
REACH = 2  # neighbours t±1, t±2, as the network's bidirectional mode
SIGMA = 0.5  # kernel-regression width, LR cells
GRID_SIGMA = 0.3  # the same, for the super-grids fed to the network (0.3 beat 0.5 on training sequences)
MIX = 0.2  # weight of the kernel regression in the convex mix with the per-frame output
ROWS = (
    "bilinear", "perframe", "bidirectional", "ensemble_perframe", "kr_single", "kr_multi", "mix_single", "mix_multi",
    "dense_ideal", "dense_net", "kr_net_single", "kr_net_multi",
)


def cell_centres(grid: tuple[int, int], size: tuple[int, int]) -> Tensor:
    """`(2, gh, gw)` (x, y) pixel coordinates of the centres of a `grid` laid over a frame of `size`."""
    ys = (torch.arange(grid[0]) + 0.5) * size[0] / grid[0] - 0.5
    xs = (torch.arange(grid[1]) + 0.5) * size[1] / grid[1] - 0.5
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack((gx, gy))


def kernel_regression(samples: list[tuple[Tensor, Tensor, Tensor]], patch: int, sigma: float) -> Tensor:
    """Σ w·v / Σ w over the 3 × 3 nearest LR cells of each `(feats (C, h, w), points (2, gh, gw), valid (gh, gw))`.

    `points` are (x, y) pixel coordinates in that frame where the target cells land; w = exp(−d²/2σ²) with d the
    distance in LR cells from the point to the cell's centre, 0 where not `valid` or the cell is off the grid.
    Returns `(C, gh, gw)`.
    """
    total, weight = 0.0, 0.0
    for feats, points, valid in samples:
        c, h, w = feats.shape
        u = (points[0] + 0.5) / patch - 0.5  # LR cell coordinates of the point
        v = (points[1] + 0.5) / patch - 0.5
        flat = feats.reshape(c, h * w)
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                ix, iy = u.round() + dx, v.round() + dy
                on_grid = (ix >= 0) & (ix <= w - 1) & (iy >= 0) & (iy <= h - 1) & valid
                wt = torch.exp(-((ix - u) ** 2 + (iy - v) ** 2) / (2 * sigma * sigma)) * on_grid
                index = (iy.clamp(0, h - 1) * w + ix.clamp(0, w - 1)).long().reshape(-1)
                total = total + flat[:, index].reshape(c, *u.shape) * wt
                weight = weight + wt
    return total / torch.as_tensor(weight).clamp_min(1e-8)


def shift_content(frame: Tensor, sx: int, sy: int) -> Tensor:
    """`(..., H, W)` → the same size, pixel (x, y) showing pixel (x + sx, y + sy) (the border replicated)."""
    h, w = frame.shape[-2:]
    padded = F.pad(frame, (max(-sx, 0), max(sx, 0), max(-sy, 0), max(sy, 0)), mode="replicate")
    return padded[..., max(sy, 0) : max(sy, 0) + h, max(sx, 0) : max(sx, 0) + w]


def half_patch_grids(backbone, frames: Tensor) -> Tensor:
    """The backbone on `frames (T, 3, H, W)` shifted by ∓p/4 in x and y (4 grids) interleaved: `(T, C, 2h, 2w)`.

    The result lies on the fidelity target's grid 2g: its cell m (along an axis) shows the patch of pixels
    [m·p/2 − p/4, m·p/2 + 3p/4), centred on target cell m (p/4 rounded towards −∞: half a pixel off for p = 14).
    This is what perfectly aligned neighbours, each moved by half a patch and otherwise unchanged, would give.
    """
    p = backbone.patch_size
    shifts = (-((p + 3) // 4), p // 2 - (p + 3) // 4)  # even cells, odd cells: (−1, 1) for p = 4, (−4, 3) for p = 14
    dense = None
    for iy, sy in enumerate(shifts):
        for ix, sx in enumerate(shifts):
            with torch.inference_mode():
                f = backbone.extract(shift_content(frames, sx, sy)[None])[0].float()  # (T, C, h, w)
            if dense is None:
                dense = f.new_zeros(*f.shape[:2], 2 * f.shape[2], 2 * f.shape[3])
            dense[:, :, iy::2, ix::2] = f
    return dense


def run(args: argparse.Namespace) -> dict:
    from videoanyup.backbones import build_backbone
    from videoanyup.functional.warp import flow_warp
    from videoanyup.models.videoanyup import VideoAnyUp
    from videoanyup.tasks.probes import davis
    from videoanyup.tasks.probes.fidelity import cosine_map, reference_features

    torch.set_num_threads(args.threads)
    model = VideoAnyUp.from_pretrained(args.weights).eval()
    scores: dict[str, list[float]] = {k: [] for k in (*ROWS, "subcell_1", "subcell_2")}
    start = time.perf_counter()
    for seed in args.seeds:
        torch.manual_seed(seed)
        backbone = build_backbone(args.backbone, random=True)
        p = backbone.patch_size
        for name in args.seqs:
            seq = davis.load_sequence(args.davis, name, frames=args.frames, short_side=args.short_side, patch_size=p)
            frames = seq.frames  # (T, 3, H, W)
            T, size = frames.shape[0], tuple(frames.shape[-2:])
            reference = reference_features(backbone, frames)  # (T, C, 2h, 2w)
            target_grid = tuple(reference.shape[-2:])
            centres = cell_centres(target_grid, size)  # (2, 2h, 2w) pixels
            pool = lambda x: F.interpolate(x, size=target_grid, mode="area")  # noqa: E731
            with torch.inference_mode():
                feats = backbone.extract(frames[None])[0].float()  # (T, C, h, w)
                perframe = pool(model(feats[None], frames[None], mode="perframe")[0])
                bidirectional = pool(model(feats[None], frames[None], mode="bidirectional")[0])
                dense = half_patch_grids(backbone, frames)  # (T, C, 2h, 2w), on the target's grid
                upsample = lambda x: pool(F.interpolate(x, size=size, mode="bilinear", align_corners=False))  # noqa: E731
                dense_ideal = upsample(dense)
                dense_net = pool(model(dense[None], frames[None], mode="perframe")[0])
                flows = {  # fine flow t → s at the target cells, pixels: (2, 2h, 2w)
                    (t, s): pool(model.fine_flow(frames[t : t + 1], frames[s : s + 1], size))[0]
                    for t in range(T) for s in range(max(0, t - REACH), min(T, t + REACH + 1)) if s != t
                }
            out = {k: [] for k in ROWS}
            super_grids = {"single": [], "multi": []}  # (C, 2h, 2w) per frame, for the network
            moved = {1: [], 2: []}
            for t in range(T):
                own = [(feats[t], centres, torch.ones(target_grid, dtype=torch.bool))]
                neighbours, warped, weights = [], [perframe[t]], [torch.ones(1, *target_grid)]
                for (a, s), flow in flows.items():
                    if a != t:
                        continue
                    points = centres + flow  # where frame t's target cells land in frame s, pixels
                    inside = (points[0] >= -0.5) & (points[0] <= size[1] - 0.5) & (points[1] >= -0.5) & (points[1] <= size[0] - 0.5)
                    neighbours.append((feats[s], points, inside))
                    scale = flow.new_tensor([target_grid[1] / size[1], target_grid[0] / size[0]]).view(2, 1, 1)
                    warped.append(flow_warp(perframe[s][None], (flow * scale)[None])[0] * inside)
                    weights.append(inside[None].float())
                    residual = (flow / p - (flow / p).round()).abs()
                    moved[abs(s - t)].append(float((residual.amax(0) > 0.25).float().mean()))
                kr_single = kernel_regression(own, p, SIGMA)
                kr_multi = kernel_regression(own + neighbours, p, SIGMA)
                super_grids["single"].append(kernel_regression(own, p, GRID_SIGMA))
                super_grids["multi"].append(kernel_regression(own + neighbours, p, GRID_SIGMA))
                out["bilinear"].append(upsample(feats[t : t + 1])[0])
                out["perframe"].append(perframe[t])
                out["bidirectional"].append(bidirectional[t])
                out["ensemble_perframe"].append(sum(warped) / sum(weights))
                out["kr_single"].append(kr_single)
                out["kr_multi"].append(kr_multi)
                out["mix_single"].append((1 - MIX) * perframe[t] + MIX * kr_single)
                out["mix_multi"].append((1 - MIX) * perframe[t] + MIX * kr_multi)
                out["dense_ideal"].append(dense_ideal[t])
                out["dense_net"].append(dense_net[t])
            with torch.inference_mode():
                for kind, grids in super_grids.items():
                    out[f"kr_net_{kind}"] = list(pool(model(torch.stack(grids)[None], frames[None], mode="perframe")[0]))
            for k, v in out.items():
                scores[k].append(float(cosine_map(torch.stack(v), reference).mean()))
            for d in (1, 2):
                scores[f"subcell_{d}"].append(sum(moved[d]) / max(len(moved[d]), 1))
            print(f"seed {seed} {name}: {time.perf_counter() - start:.0f} s", flush=True)
    mean = {k: sum(v) / len(v) for k, v in scores.items()}
    return dict(
        weights=str(args.weights), backbone=args.backbone, random_backbone=True, seeds=args.seeds, seqs=args.seqs,
        frames=args.frames, reach=REACH, sigma_cells=SIGMA, grid_sigma_cells=GRID_SIGMA, mix=MIX, mean=mean, per_run=scores,
        seconds=time.perf_counter() - start,
    )


def table(result: dict) -> str:
    m = result["mean"]
    lines = [f"{'row':20} {'fidelity':>9} {'vs perframe':>12}", "-" * 43]
    for k in ROWS:
        lines.append(f"{k:20} {m[k]:9.4f} {m[k] - m['perframe']:+12.4f}")
    lines.append("-" * 43)
    lines.append(f"kr_multi − kr_single {m['kr_multi'] - m['kr_single']:+.4f}   mix_multi − mix_single {m['mix_multi'] - m['mix_single']:+.4f}")
    lines.append(f"dense_ideal − bilinear {m['dense_ideal'] - m['bilinear']:+.4f}   dense_net − perframe {m['dense_net'] - m['perframe']:+.4f}")
    lines.append(f"kr_net_multi − kr_net_single {m['kr_net_multi'] - m['kr_net_single']:+.4f}")
    lines.append(f"pixels moved > ¼ cell off the grid: t±1 {m['subcell_1']:.2f}, t±2 {m['subcell_2']:.2f}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_clip_arguments(parser)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON)
    args = parser.parse_args()
    if not Path(args.davis).is_dir():
        parser.error(f"--davis {args.davis!r} is not a folder")
    result = run(args)
    print()
    print(table(result))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
