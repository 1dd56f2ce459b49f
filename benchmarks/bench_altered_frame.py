"""Held-out benchmark of the multi-frame upsampler: clean frames, degraded frames, scene events and cuts.

For each held-out DAVIS sequence and random-backbone seed, the first T frames (the probe's loader: short side
224, sides snapped to the patch) are read, frame t (default 4 of 8) is altered before the backbone and in the
guidance alike, and every method upsamples the clip: bilinear, per frame, bidirectional and unidirectional
VideoAnyUp (n/a where the weights were not trained for the mode). Scores (`tasks/probes/fidelity.py`: the cosine
to the backbone run on the frame upscaled 2×, the output area-pooled to that grid):

- **clean**: fidelity over all T frames; temporal error over each clip ÷ bilinear's on that clip, averaged over
  the clips (`temporal_consistency.py`, DIS flow with a forward–backward check, a flow the network does not use;
  the VOS probe pools the pairs of all clips before the ratio, which weighs the steadier clips more and reads
  lower);
- **degradations** (target: the clean frame t): Gaussian blur σ = 10 and σ = 5 (pixels of the 224 frame), a grey
  box over the central 40 % of each side (scored inside the box). Reported as the gain over per frame;
- **scene events** (target: the altered frame's own): fade to 30 % and to 10 % brightness, exposure × 1.6
  (clipped). Reported as the cosine of output t to the per-frame output of the same altered frame, beside the
  same cosine on the clean clip: a network that leans on the neighbours through a scene change moves away;
- **cut**: frames 0 … t − 1 replaced by the first frames of another held-out sequence (the next in the list).
  Reported: the attention mass of frame t on the candidates of the other shot (measured exactly: indicator
  channels appended to the values, which the attention mixes like any channel) and frame t's fidelity beside
  per frame's.

Prints a table and writes JSON; nothing is fitted here.

    python benchmarks/bench_altered_frame.py                       # bundled weights, 4 sequences × seeds 1–3
    python benchmarks/bench_altered_frame.py --weights runs/.../videoanyup --seeds 1 --seqs dog,blackswan --frames 6
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_JSON = Path(__file__).parent / "results" / "bench_altered_frame.json"
HELD_OUT = ("blackswan", "breakdance", "car-shadow", "dog")
METHODS = ("bilinear", "perframe", "bidirectional", "unidirectional")
DEGRADATIONS = {"blur10": ("blur", 10.0), "blur5": ("blur", 5.0), "box": ("box", 0.4)}
EVENTS = {"fade30": 0.3, "fade10": 0.1, "exposure16": 1.6}


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


def altered(frames: torch.Tensor, t: int, kind: str) -> torch.Tensor:
    """`(T, 3, H, W)` with frame t degraded or changed by a scene event (`kind`)."""
    from videoanyup.tasks.upsampler.degrade import gaussian_blur, grey_box

    out = frames.clone()
    if kind in DEGRADATIONS:
        how, value = DEGRADATIONS[kind]
        frame = frames[t : t + 1]
        out[t] = (gaussian_blur(frame, value) if how == "blur" else grey_box(frame, box_of(tuple(frames.shape[-2:]), value)))[0]
    else:
        out[t] = (frames[t] * EVENTS[kind]).clamp(0, 1)
    return out


class MassProbe:
    """While active, appends indicator channels to the values of the attention's calls, so the output's extra
    channel at frame `t` is the attention mass on the candidates of the frames in `marked` (own frame: 0)."""

    def __init__(self, model, t: int, marked: set[int]) -> None:
        self.model, self.t, self.marked = model, t, marked
        self.calls, self.mass = 0, None

    def __enter__(self):
        attention = self.model.attention
        original = attention.forward

        def spy(guidance, key_feats, values, **options):
            frame = self.calls
            self.calls += 1
            nb = options.get("neighbours")
            if frame != self.t or nb is None:
                return original(guidance, key_feats, values, **options)
            deltas = [int(d) for d in self.model.neighbour_deltas(self.mode)]
            indicator = torch.tensor([float(frame + d in self.marked) for d in deltas], dtype=values.dtype)
            b = values.shape[0]
            extra = indicator.repeat(b).view(-1, 1, 1, 1).expand(-1, 1, *values.shape[-2:])  # rows n·D + d
            nb.values = torch.cat([nb.values, extra], dim=1)
            target = options.get("out")
            out = original(guidance, key_feats, torch.cat([values, torch.zeros_like(values[:, :1])], dim=1), **dict(options, out=None))
            self.mass = float(out[:, -1].mean())
            if target is None:
                return out[:, :-1]
            return target.copy_(out[:, :-1])

        attention.forward = spy
        return self

    def __exit__(self, *exc):
        del self.model.attention.forward


def run_model(model, feats, clip, mode):
    with torch.inference_mode():
        return model(feats[None], clip[None], mode=mode)[0]


def run(args: argparse.Namespace) -> dict:
    from videoanyup.backbones import build_backbone
    from videoanyup.models.videoanyup import VideoAnyUp
    from videoanyup.tasks.probes import davis
    from videoanyup.tasks.probes.fidelity import cosine_map, reference_features
    from videoanyup.tasks.probes.temporal_consistency import clip_flows, ratio, temporal_error

    torch.set_num_threads(args.threads)
    model = VideoAnyUp.from_pretrained(args.weights)
    trained = set(model.trained_modes or METHODS[1:])
    methods = [m for m in METHODS if m == "bilinear" or m in trained]
    t = args.frame
    rows: dict[str, dict[str, list[float]]] = {m: {} for m in methods}

    def add(method: str, key: str, value: float) -> None:
        rows[method].setdefault(key, []).append(value)

    start = time.perf_counter()
    for seed in args.seeds:
        torch.manual_seed(seed)
        backbone = build_backbone(args.backbone, random=True)
        load = lambda name: davis.load_sequence(args.davis, name, frames=args.frames, short_side=args.short_side, patch_size=backbone.patch_size).frames  # noqa: E731
        for i, name in enumerate(args.seqs):
            frames = load(name)  # (T, 3, H, W)
            size = tuple(frames.shape[-2:])
            with torch.inference_mode():
                feats = backbone.extract(frames[None])[0].float()  # (T, C, h, w)
            targets = reference_features(backbone, frames)  # (T, C, 2h, 2w)

            def upsample(method, clip, clip_feats, mode_frame=None):
                if method == "bilinear":
                    return F.interpolate(clip_feats, size=size, mode="bilinear", align_corners=False)
                if method == "perframe":
                    with torch.inference_mode():
                        return model(clip_feats[:, None], clip[:, None], mode="perframe")[:, 0]
                return run_model(model, clip_feats, clip, method)

            # clean: fidelity of every frame, temporal error of the clip
            flows = clip_flows(frames)
            clean_out = {m: upsample(m, frames, feats) for m in methods}
            bilinear_error = temporal_error(clean_out["bilinear"], flows)
            for m in methods:
                add(m, "clean_fidelity", float(cosine_map(clean_out[m], targets).mean()))
                add(m, "clean_frame", float(cosine_map(clean_out[m][t : t + 1], targets[t : t + 1]).mean()))
                add(m, "temporal_ratio", ratio(temporal_error(clean_out[m], flows), bilinear_error))
            perframe_clean_t = clean_out["perframe"][t : t + 1]
            for m in methods:
                add(m, "clean_cos_perframe", float(F.cosine_similarity(clean_out[m][t : t + 1], perframe_clean_t, dim=1).mean()))

            # degradations: the clean target
            box = box_of(size, DEGRADATIONS["box"][1])
            mask = inside_cells(box, size, tuple(targets.shape[-2:]))
            for kind in DEGRADATIONS:
                clip = altered(frames, t, kind)
                clip_feats = feats.clone()
                with torch.inference_mode():
                    clip_feats[t] = backbone.extract(clip[None, t : t + 1])[0, 0].float()
                for m in methods:
                    out = upsample(m, clip, clip_feats)[t : t + 1]
                    cos = cosine_map(out, targets[t : t + 1])[0]
                    add(m, kind, float(cos[mask].mean() if kind == "box" else cos.mean()))

            # scene events: the altered frame's own features; cos of output t to per frame's on that frame
            for kind in EVENTS:
                clip = altered(frames, t, kind)
                clip_feats = feats.clone()
                with torch.inference_mode():
                    clip_feats[t] = backbone.extract(clip[None, t : t + 1])[0, 0].float()
                own = reference_features(backbone, clip[t : t + 1])
                outs = {m: upsample(m, clip, clip_feats)[t : t + 1] for m in methods}
                for m in methods:
                    add(m, kind + "_cos_perframe", float(F.cosine_similarity(outs[m], outs["perframe"], dim=1).mean()))
                    add(m, kind + "_fidelity", float(cosine_map(outs[m], own).mean()))

            # cut: frames 0 … t − 1 from the next held-out sequence
            other = load(args.seqs[(i + 1) % len(args.seqs)])
            other = F.interpolate(other, size=size, mode="bilinear", align_corners=False, antialias=True) if other.shape[-2:] != frames.shape[-2:] else other
            clip = torch.cat([other[:t], frames[t:]])
            with torch.inference_mode():
                clip_feats = torch.cat([backbone.extract(other[None, :t])[0].float(), feats[t:]])
            for m in methods:
                if m in ("bidirectional", "unidirectional"):
                    probe = MassProbe(model, t, set(range(t)))
                    probe.mode = m
                    with probe:
                        out = upsample(m, clip, clip_feats)[t : t + 1]
                    add(m, "cut_mass", probe.mass)
                    clean_probe = MassProbe(model, t, set(range(t)))
                    clean_probe.mode = m
                    with clean_probe:
                        upsample(m, frames, feats)
                    add(m, "clean_mass", clean_probe.mass)
                else:
                    out = upsample(m, clip, clip_feats)[t : t + 1]
                add(m, "cut_fidelity", float(cosine_map(out, targets[t : t + 1]).mean()))
            print(f"seed {seed} {name}: {time.perf_counter() - start:.0f} s", flush=True)
    summary = []
    for m in methods:
        row = {"method": m, **{k: sum(v) / len(v) for k, v in rows[m].items()}, "per_run": rows[m]}
        summary.append(row)
    base = next(r for r in summary if r["method"] == "perframe")
    for row in summary:
        for kind in (*DEGRADATIONS, "clean_fidelity", "cut_fidelity"):
            row[f"gain_{kind}"] = row[kind] - base[kind]
    return dict(
        weights=str(args.weights), backbone=args.backbone, random_backbone=True, seeds=args.seeds, seqs=args.seqs,
        frames=args.frames, frame=t, rows=summary, seconds=time.perf_counter() - start,
    )


def table(result: dict) -> str:
    rows = {r["method"]: r for r in result["rows"]}
    base = rows["perframe"]
    lines = [f"{'':28}" + "".join(f"{m:>16}" for m in rows)]

    def line(label, fn):
        lines.append(f"{label:28}" + "".join(f"{fn(r):>16}" for r in rows.values()))

    line("clean fidelity", lambda r: f"{r['clean_fidelity']:.4f}")
    line("clean, − per frame", lambda r: f"{r['gain_clean_fidelity']:+.4f}")
    line("temporal error ÷ bilinear, per clip", lambda r: f"{r['temporal_ratio']:.3f}")
    for kind in DEGRADATIONS:
        line(f"{kind}: gain over per frame", lambda r, k=kind: f"{r['gain_' + k]:+.4f}")
    loss5 = base["clean_frame"] - base["blur5"]
    line("blur5: share of per frame's loss", lambda r: f"{(r['blur5'] - base['blur5']) / loss5:.2f}" if loss5 > 0 else "n/a")
    line("cos to per frame, clean", lambda r: f"{r['clean_cos_perframe']:.4f}")
    for kind in EVENTS:
        line(f"{kind}: cos − clean's", lambda r, k=kind: f"{r[k + '_cos_perframe'] - r['clean_cos_perframe']:+.4f}")
    line("cut: mass on other shot", lambda r: f"{r['cut_mass']:.4f}" if "cut_mass" in r else "–")
    line("clean: mass on frames < t", lambda r: f"{r['clean_mass']:.4f}" if "clean_mass" in r else "–")
    line("cut: fidelity − per frame", lambda r: f"{r['gain_cut_fidelity']:+.4f}")
    return "\n".join(lines)


def add_clip_arguments(parser: argparse.ArgumentParser) -> None:
    """The protocol's arguments shared by the held-out benchmarks: weights, clips, backbone seeds, frames."""
    parser.add_argument("--weights", default="default", help="VideoAnyUp folder or bundled name (default: default)")
    parser.add_argument("--davis", default=str(ROOT.parent / "shared" / "data" / "davis"), help="DAVIS root")
    parser.add_argument("--seqs", type=lambda s: s.split(","), default=list(HELD_OUT))
    parser.add_argument("--seeds", type=lambda s: [int(v) for v in s.split(",")], default=[1, 2, 3])
    parser.add_argument("--backbone", default="dinov2_vits14", help="built with random weights (offline)")
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--short-side", type=int, default=224, help="frames resized to this short side (default 224)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_clip_arguments(parser)
    parser.add_argument("--frame", type=int, default=4, help="the altered frame t (default 4 of 8)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON)
    args = parser.parse_args()
    if not Path(args.davis).is_dir():
        parser.error(f"--davis {args.davis!r} is not a folder")
    if not 1 <= args.frame < args.frames:
        parser.error(f"--frame must be in [1, --frames), got {args.frame}")
    result = run(args)
    print()
    print(table(result))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
