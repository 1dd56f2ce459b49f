"""Corrupted-frame benchmark: does the upsampler take from the neighbouring frames what one frame lacks?

For each held-out DAVIS sequence and backbone seed, the first T frames (the probe's loader: short side 224,
sides snapped to the patch) are read clean, then frame t is degraded — a Gaussian blur ("blur"), or a grey
box over part of it ("box") — before the backbone and in the guidance alike. The score is the cosine of
output t to the clean frame's fidelity target (`tasks/probes/fidelity.py`: the backbone on the clean frame
upscaled 2×, the output area-pooled to that grid); for the box, only over the target cells inside the box.
A "clean" column gives the same score on the undegraded clip. Rows: bilinear, perframe, bidirectional,
unidirectional (n/a where the weights were not trained for the mode). Prints a table, writes JSON.

    python benchmarks/bench_corrupted_frame.py                       # bundled weights, the issue's protocol
    python benchmarks/bench_corrupted_frame.py --weights runs/.../videoanyup --seeds 1 --seqs dog --frames 5
    python benchmarks/bench_corrupted_frame.py --kinds blur --sigma 3    # a mild blur (see below)

With a random backbone a mild blur (σ = 3) *raises* every method's cosine: the target is the backbone on a
bicubic-upscaled, smooth frame, so the blurred frame's features are closer to it (bilinear at σ = 0, 3, 8, 12
on dog, seed 1: 0.852, 0.878, 0.856, 0.836). Blur gains are therefore only meaningful at σ ≳ 10, the default.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_JSON = Path(__file__).parent / "results" / "bench_corrupted_frame.json"
HELD_OUT = ("blackswan", "breakdance", "car-shadow", "dog")
METHODS = ("bilinear", "perframe", "bidirectional", "unidirectional")


def box_of(size: tuple[int, int], fraction: float) -> tuple[int, int, int, int]:
    """A centred box covering `fraction` of each side: `(top, bottom, left, right)` pixels."""
    h, w = size
    bh, bw = max(1, round(fraction * h)), max(1, round(fraction * w))
    top, left = (h - bh) // 2, (w - bw) // 2
    return top, top + bh, left, left + bw


def inside_cells(box: tuple[int, int, int, int], size: tuple[int, int], grid: tuple[int, int]) -> torch.Tensor:
    """`(gh, gw)` bool: the cells of a grid over a frame of `size` whose centres lie inside `box`."""
    top, bottom, left, right = box
    ys = (torch.arange(grid[0]) + 0.5) * size[0] / grid[0]
    xs = (torch.arange(grid[1]) + 0.5) * size[1] / grid[1]
    return ((ys >= top) & (ys < bottom))[:, None] & ((xs >= left) & (xs < right))[None, :]


def degrade(frames: torch.Tensor, t: int, kind: str, sigma: float, box: tuple[int, int, int, int]) -> torch.Tensor:
    from videoanyup.tasks.upsampler.degrade import gaussian_blur, grey_box

    out = frames.clone()
    out[t] = (gaussian_blur(frames[t : t + 1], sigma) if kind == "blur" else grey_box(frames[t : t + 1], box))[0]
    return out


def add_clip_arguments(parser: argparse.ArgumentParser) -> None:
    """The protocol's arguments shared by the held-out benchmarks: weights, clips, backbone seeds, frames."""
    parser.add_argument("--weights", default="default", help="VideoAnyUp folder or bundled name (default: default)")
    parser.add_argument("--davis", default=str(ROOT.parent / "shared" / "data" / "davis"), help="DAVIS root")
    parser.add_argument("--seqs", type=lambda s: s.split(","), default=list(HELD_OUT))
    parser.add_argument("--seeds", type=lambda s: [int(v) for v in s.split(",")], default=[1, 2, 3])
    parser.add_argument("--backbone", default="dinov2_vits14", help="built with random weights (offline)")
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--short-side", type=int, default=224, help="frames resized to this short side (default 224)")


def run(args: argparse.Namespace) -> dict:
    from videoanyup.backbones import build_backbone
    from videoanyup.models.videoanyup import VideoAnyUp
    from videoanyup.tasks.probes import davis
    from videoanyup.tasks.probes.fidelity import cosine_map, reference_features

    torch.set_num_threads(args.threads)
    device = torch.device(getattr(args, "device", "cpu"))
    model = VideoAnyUp.from_pretrained(args.weights).eval().to(device)
    trained = set(model.trained_modes or METHODS[1:])
    scores: dict[str, dict[str, list[float]]] = {m: {"clean": [], "blur": [], "box": []} for m in METHODS}
    start = time.perf_counter()
    for seed in args.seeds:
        torch.manual_seed(seed)
        backbone = build_backbone(args.backbone, random=True).to(device)
        for name in args.seqs:
            seq = davis.load_sequence(
                args.davis, name, frames=args.frames, short_side=getattr(args, "short_side", 224), patch_size=backbone.patch_size
            )
            frames = seq.frames.to(device)  # (T, 3, H, W)
            t = min(args.frame, frames.shape[0] - 1)
            size = tuple(frames.shape[-2:])
            reference = reference_features(backbone, frames[t : t + 1])  # (1, C, 2h, 2w), the clean target
            box = box_of(size, args.box)
            mask = inside_cells(box, size, tuple(reference.shape[-2:])).to(device)
            with torch.inference_mode():
                clean_feats = backbone.extract(frames[None])[0].float()  # (T, C, h, w)
            for kind in ("clean", *args.kinds):
                clip, feats = frames, clean_feats
                if kind != "clean":  # the backbone sees each frame on its own: only frame t's features change
                    clip = degrade(frames, t, kind, args.sigma, box)
                    feats = clean_feats.clone()
                    with torch.inference_mode():
                        feats[t] = backbone.extract(clip[None, t : t + 1])[0, 0].float()
                for method in METHODS:
                    if method == "bilinear":
                        out = F.interpolate(feats[t : t + 1], size=size, mode="bilinear", align_corners=False)
                    elif method not in trained:
                        continue
                    elif method == "perframe":  # frame t alone
                        with torch.inference_mode():
                            out = model(feats[None, t : t + 1], clip[None, t : t + 1], mode=method)[0]
                    else:
                        with torch.inference_mode():
                            out = model(feats[None], clip[None], mode=method)[0, t : t + 1]
                    cos = cosine_map(out, reference)[0]  # (2h, 2w)
                    scores[method][kind].append(float(cos[mask].mean() if kind == "box" else cos.mean()))
            print(f"seed {seed} {name}: {time.perf_counter() - start:.0f} s", flush=True)
    rows = []
    for method in METHODS:
        if not scores[method]["clean"]:
            rows.append(dict(method=method, note="n/a: the weights were not trained for this mode"))
            continue
        row = dict(method=method, **{k: sum(v) / len(v) for k, v in scores[method].items() if v})
        row["per_run"] = scores[method]
        rows.append(row)
    base = next(r for r in rows if r["method"] == "perframe")
    for row in rows:
        if "clean" in row and "clean" in base:
            for kind in ("clean", *args.kinds):
                row[f"gain_{kind}"] = row[kind] - base[kind]
    return dict(
        weights=str(args.weights), backbone=args.backbone, random_backbone=True, seeds=args.seeds, seqs=args.seqs,
        frames=args.frames, frame=args.frame, sigma=args.sigma, box_fraction=args.box, kinds=args.kinds, rows=rows,
        seconds=time.perf_counter() - start,
    )


def table(result: dict) -> str:
    head = f"{'method':15} {'clean':>7} {'blur':>7} {'box':>7} {'Δblur':>7} {'Δbox':>7}"
    lines = [head, "-" * len(head)]
    for r in result["rows"]:
        if "clean" not in r:
            lines.append(f"{r['method']:15} {r['note']}")
            continue
        lines.append(
            f"{r['method']:15} {r['clean']:7.4f} {r.get('blur', float('nan')):7.4f} {r.get('box', float('nan')):7.4f} "
            f"{r.get('gain_blur', float('nan')):+7.4f} {r.get('gain_box', float('nan')):+7.4f}"
        )
    lines.append("Δ: gain in cosine over perframe on the degraded frame (box: scored inside the box)")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_clip_arguments(parser)
    parser.add_argument("--frame", type=int, default=4, help="the degraded frame t (default 4 of 8)")
    parser.add_argument("--sigma", type=float, default=10.0, help="blur σ in pixels of the 224-short-side frame (≳ 10: see the docstring)")
    parser.add_argument("--box", type=float, default=0.4, help="grey box side as a fraction of the frame's sides")
    parser.add_argument("--kinds", type=lambda s: s.split(","), default=["blur", "box"], help="blur, box or both")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, … (the random backbone is seeded on the CPU)")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON)
    args = parser.parse_args()
    if not Path(args.davis).is_dir():
        parser.error(f"--davis {args.davis!r} is not a folder")
    if not args.kinds or any(k not in ("blur", "box") for k in args.kinds):
        parser.error(f"--kinds takes a comma list of blur, box; got {args.kinds}")
    result = run(args)
    print()
    print(table(result))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
