"""`videoanyup probe`: linear probes on upsampled features, upsamplers side by side.

    videoanyup probe --task vos --train ../shared/data/davis --train-seqs blackswan,bmx-trees \
        --test ../shared/data/davis --test-seqs camel,cows --backbone dinov2_vits14 --random-backbone \
        --upsampler bilinear,perframe,videoanyup --weights PATH --frames-per-seq 8 --json vos.json --figures figs
    videoanyup probe --task depth --train NYU/train --test NYU/test --backbone dinov2_vits14 --weights PATH

VOS: DAVIS layout (JPEGImages/<seq>/, Annotations/<seq>/), the first N frames of each sequence; reports
J, F, J&F of the probe, JF_prop of label propagation, temporal errors (ratio to bilinear) and fidelity, and a
last row `featureless` (a position prior from the training masks and the first mask copied: the floor).
Depth: DIR/rgb/*.{png,jpg} and DIR/depth/*.{png (16-bit mm), npy (m)}; reports rmse and delta1 instead of J/F,
and a last row `featureless` (the mean training log-depth at each position).

`--json` writes `{"format": JSON_FORMAT, "task": …, "rows": [one object per upsampler, then featureless]}`;
`--figures` a flat folder of PCA colourings. Both go through `output_guard`, checked before any work, and
replace an earlier output of this tool only with `--overwrite`.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import math

log = logging.getLogger(__name__)

JSON_FORMAT = "videoanyup-probe/1"


def _names(text: str) -> list[str]:
    return [n.strip() for n in text.split(",") if n.strip()]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `probe`."""
    parser.add_argument("--task", default="vos", choices=["vos", "depth"], help="vos (DAVIS layout) or depth (rgb/ + depth/)")
    parser.add_argument("--train", required=True, help="root of the training data")
    parser.add_argument("--test", required=True, help="root of the test data (may equal --train with disjoint --*-seqs)")
    parser.add_argument("--train-seqs", type=_names, default=None, help="vos: comma list of training sequences (default: all)")
    parser.add_argument("--test-seqs", type=_names, default=None, help="vos: comma list of test sequences (default: all)")
    parser.add_argument("--backbone", required=True,
                        help="registered backbone (e.g. dinov2_vits14, resnet50@s8) or timm:NAME[@LEVEL], e.g. timm:convnext_small.fb_in1k@s16")
    parser.add_argument("--random-backbone", action="store_true", help="random (non-degenerate) backbone weights, offline")
    parser.add_argument("--upsampler", default="bilinear,perframe,videoanyup", help="comma list of bilinear, perframe, videoanyup (the weights' own mode), bidirectional, unidirectional, lookahead")
    parser.add_argument("--weights", help="VideoAnyUp checkpoint folder or bundled name (default: the bundled default)")
    parser.add_argument("--frames-per-seq", type=int, default=8, help="vos: the first N consecutive frames of each sequence (default 8)")
    parser.add_argument("--short-side", type=int, default=224, help="frames resized to this short side (default 224)")
    parser.add_argument("--pixels", type=int, default=1024, help="training pixels sampled per frame (default 1024)")
    parser.add_argument("--steps", type=int, default=300, help="probe optimiser steps, full batch (default 300)")
    parser.add_argument("--lr", type=float, default=1e-2, help="probe Adam learning rate (default 1e-2)")
    parser.add_argument("--prior-correction", action="store_true",
                        help="vos: move the probe's biases from the class-balanced samples to the training frames' "
                             "class frequencies (default: as trained)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sampled pixels, probe and random backbone (default 0)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    parser.add_argument("--json", help="write the results here: {\"format\", \"task\", \"rows\": one object per upsampler, "
                        "then the featureless reference}")
    parser.add_argument("--figures", help="write PCA colourings (PNG grid, mp4) of LR / upsampled features into this folder")
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier --json / --figures output of videoanyup")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def _load_model(weights: str | None):
    from videoanyup.models.videoanyup import VideoAnyUp

    if weights is None:
        from videoanyup.api import default_model

        try:
            return default_model()
        except RuntimeError as error:
            raise ValueError(f"--weights is needed: no bundled default VideoAnyUp weights ({error})") from error
    try:
        return VideoAnyUp.from_pretrained(weights).eval()
    except (ValueError, OSError, RuntimeError) as error:
        raise ValueError(f"--weights {weights!r}: {error}") from error


def run(args: argparse.Namespace) -> int:
    """Run the probe of `args.task`, print the table, write JSON / figures. Bad inputs raise ValueError."""
    import torch

    from videoanyup.backbones import build_backbone
    from videoanyup.tasks import output_guard
    from videoanyup.tasks.probes.upsamplers import NEEDS_MODEL, parse_upsamplers
    from videoanyup.tasks.probes.vos import format_table

    upsamplers = parse_upsamplers(args.upsampler)
    for name, value, low in (("--frames-per-seq", args.frames_per_seq, 2), ("--short-side", args.short_side, 1),
                             ("--pixels", args.pixels, 1), ("--steps", args.steps, 1), ("--threads", args.threads, 0)):
        if value < low:
            raise ValueError(f"{name} must be ≥ {low}, got {value}")
    inputs = [args.train, args.test]
    if args.json:  # before any work: the results must be able to land there
        output_guard.check_output(args.json, folder=False, overwrite=args.overwrite, inputs=inputs)
    if args.figures:
        output_guard.check_output(args.figures, folder=True, overwrite=args.overwrite, inputs=inputs)
    if args.threads:
        torch.set_num_threads(args.threads)
    model = _load_model(args.weights) if any(u in NEEDS_MODEL for u in upsamplers) else None
    torch.manual_seed(args.seed)
    try:
        backbone = build_backbone(args.backbone, random=args.random_backbone)
    except RuntimeError as error:  # offline without cached weights
        raise ValueError(f"--backbone {args.backbone}: {error}") from error
    except ValueError as error:
        raise ValueError(f"--backbone: {error}") from error
    if args.task != "vos" and (args.train_seqs is not None or args.test_seqs is not None):
        raise ValueError("--train-seqs / --test-seqs apply to --task vos only")
    figures = (output_guard.output_folder(args.figures, overwrite=args.overwrite, inputs=inputs) if args.figures
               else contextlib.nullcontext(None))
    with figures as folder:  # the figures appear whole when the probe has run, or not at all
        common = dict(
            backbone=backbone, upsamplers=upsamplers, model=model, short_side=args.short_side, pixels=args.pixels,
            steps=args.steps, lr=args.lr, seed=args.seed, figures=folder, progress=not args.quiet,
        )
        if args.task == "vos":
            from videoanyup.tasks.probes.vos import run_vos

            rows = run_vos(args.train, args.test, frames_per_seq=args.frames_per_seq, train_seqs=args.train_seqs,
                           test_seqs=args.test_seqs, prior_correction=args.prior_correction, **common)
        else:
            from videoanyup.tasks.probes.depth import run_depth

            rows = run_depth(args.train, args.test, **common)
    print(format_table(rows))
    if args.json:
        clean = [{k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in row.items()} for row in rows]
        output_guard.write_json(args.json, {"format": JSON_FORMAT, "task": args.task, "rows": clean},  # NaN → null
                                overwrite=args.overwrite, inputs=inputs)
    return 0
