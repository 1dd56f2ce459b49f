"""`videoanyup train-flow`: pretrain SPyNet on synthetic pairs, then report its EPE on MPI-Sintel samples.

    videoanyup train-flow --data ../shared/data/clips/bedroom ../shared/data/davis/JPEGImages \
        --sintel ../shared/data/sintel --crop 256 --window 64 --max-motion 64 --batch-size 8 --lr 1e-3 \
        --steps 450 --tied-steps 300 --seed 0 --out runs/spynet --export videoanyup/weights/spynet/synthetic
    videoanyup train-flow --eval-only --weights synthetic --sintel ../shared/data/sintel

Training writes Lightning checkpoints to `OUT/checkpoints/` every few minutes (`--resume OUT/checkpoints/last.ckpt`
continues exactly: pair i and the window of step k depend only on the seed), then `OUT/model.safetensors`,
`OUT/config.json` (the command, seed, data and the Sintel table) and `OUT/sintel.json`; `--export DIR` copies
those three files to DIR (e.g. the package's bundled weights folder).
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import shlex
import shutil
import sys
import time
from pathlib import Path

log = logging.getLogger(__name__)

ACCELERATORS = ("cpu", "gpu", "cuda", "mps", "auto")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `train-flow`."""
    data = parser.add_argument_group("data")
    data.add_argument("--data", nargs="+", default=[], help="frame folders, videos, or folders of those (searched recursively)")
    data.add_argument("--no-skimage", action="store_true", help="do not add the images scikit-image ships")
    data.add_argument("--frame-stride", type=int, default=4, help="keep every N-th frame of each clip (default 4)")
    data.add_argument("--crop", type=int, default=384, help="square training crop, a multiple of 32 (default 384)")
    data.add_argument("--max-motion", type=float, default=96.0, help="largest synthetic displacement in pixels (default 96)")
    data.add_argument("--large-motion", type=float, default=0.0, help="fraction of motions drawn in [max/4, max] px (default 0)")
    data.add_argument("--low-light", type=float, default=0.0, help="fraction of pairs dimmed alike in both frames (default 0)")
    data.add_argument("--max-layers", type=int, default=2, help="occluding foreground layers per pair, at most (default 2)")
    train = parser.add_argument_group("training")
    train.add_argument("--steps", type=int, default=900, help="optimiser steps (default 900)")
    train.add_argument("--batch-size", type=int, default=8, help="pairs per step (default 8)")
    train.add_argument("--window", type=int, default=64, help="full-resolution window of the two finest levels (0: whole crop)")
    train.add_argument("--lr", type=float, default=4e-4, help="Adam learning rate (default 4e-4)")
    train.add_argument("--warmup", type=int, default=50, help="warm-up steps (default 50)")
    train.add_argument("--tied-steps", type=int, default=0, help="first N steps share one module across levels (default 0)")
    train.add_argument("--no-batch-norm", action="store_true", help="train without the batch normalisation that is folded away at export")
    train.add_argument("--huber-delta", type=float, default=2.0, help="Huber threshold of the per-level loss in level pixels; 0: plain EPE (default 2)")
    train.add_argument("--teacher-steps", type=int, default=0, help="first N steps start each level from the coarser ground truth + noise (default 0)")
    train.add_argument("--teacher-noise", type=float, default=1.0, help="largest error added to the teacher flow, level pixels (default 1)")
    train.add_argument("--head-scale", type=float, default=0.1, help="initial scale of each level's last convolution (default 0.1)")
    train.add_argument("--seed", type=int, default=0, help="seed of the pairs, windows and initial weights (default 0)")
    train.add_argument("--max-minutes", type=float, default=75.0, help="stop training after this wall time (default 75)")
    train.add_argument("--ckpt-minutes", type=float, default=4.0, help="checkpoint interval in minutes (default 4)")
    train.add_argument("--val-size", type=int, default=16, help="synthetic validation pairs (default 16)")
    train.add_argument("--val-every", type=int, default=150, help="validate every N steps (default 150)")
    train.add_argument("--num-workers", type=int, default=1, help="data-loading processes (default 1)")
    train.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    train.add_argument("--accelerator", default="cpu", help=f"Lightning accelerator: {', '.join(ACCELERATORS)} (default cpu, the recipe's)")
    train.add_argument("--resume", help="Lightning checkpoint to continue from (OUT/checkpoints/last.ckpt)")
    train.add_argument("--init", help="start from these SPyNet weights (name, folder, .ckpt or published .pth)")
    out = parser.add_argument_group("evaluation and output")
    out.add_argument("--sintel", help="the sintel/ folder with {clean,final}/{easy,medium,hard} samples to evaluate on")
    out.add_argument("--out", default="runs/train-flow", help="run folder (default runs/train-flow)")
    out.add_argument("--export", help="also copy model.safetensors, config.json and sintel.json here")
    out.add_argument("--eval-only", action="store_true", help="skip training; evaluate --weights on --sintel")
    out.add_argument("--weights", default="synthetic", help="with --eval-only: SPyNet weights (default bundled 'synthetic')")
    out.add_argument("--quiet", action="store_true", help="no progress bar")


def _check(args: argparse.Namespace) -> None:
    if args.eval_only:
        if not args.sintel:
            raise ValueError("--eval-only needs --sintel DIR")
        return
    if not args.data and args.no_skimage:
        raise ValueError("--data is empty and --no-skimage is set: there are no images to train on")
    if args.accelerator not in ACCELERATORS:
        raise ValueError(f"--accelerator must be one of {', '.join(ACCELERATORS)}, got {args.accelerator!r}")
    if args.crop % 32 or args.crop < 64:
        raise ValueError(f"--crop must be a multiple of 32 and ≥ 64, got {args.crop}")
    if args.window and (args.window % 2 or args.window > args.crop):
        raise ValueError(f"--window must be even and ≤ --crop ({args.crop}), got {args.window}")
    for name in ("low_light", "large_motion"):
        if not 0.0 <= getattr(args, name) <= 1.0:
            raise ValueError(f"--{name.replace('_', '-')} must be a fraction in [0, 1], got {getattr(args, name)}")
    for name in ("steps", "batch_size", "frame_stride", "val_size", "val_every"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be ≥ 1, got {getattr(args, name)}")


def _evaluate(args: argparse.Namespace, spynet, out: Path) -> list[dict] | None:
    from videoanyup.tasks.flow.sintel import evaluate_sintel, format_table, targets_met

    if not args.sintel:
        return None
    rows = evaluate_sintel(args.sintel, spynet)
    print("End-point error on MPI-Sintel samples (all valid pixels; non-occluded in brackets), frame 2 → 3")
    print(format_table(rows))
    print("targets:", json.dumps(targets_met(rows)))
    out.mkdir(parents=True, exist_ok=True)
    (out / "sintel.json").write_text(json.dumps({"rows": rows, "targets": targets_met(rows)}, indent=2) + "\n")
    return rows


def resumable_loader(dataset, start_step: int, batch_size: int, *, num_workers: int = 0):
    """Batches of `dataset` in index order from step `start_step` on: pair i belongs to step i // batch_size, so a
    resumed run continues with exactly the pairs it had not seen (Lightning does not skip batches itself)."""
    from torch.utils.data import DataLoader, Subset

    remaining = Subset(dataset, range(start_step * batch_size, len(dataset)))
    return DataLoader(remaining, batch_size=batch_size, shuffle=False, num_workers=num_workers, drop_last=True)


def _train(args: argparse.Namespace, out: Path):
    import lightning as L
    import torch
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.loggers import CSVLogger
    from torch.utils.data import DataLoader

    from videoanyup.layers.spynet import SPyNet
    from videoanyup.tasks.flow.batch_norm import add_batch_norm, fold_batch_norm, has_batch_norm
    from videoanyup.tasks.flow.sources import load_images
    from videoanyup.tasks.flow.synthetic import SyntheticFlowPairs
    from videoanyup.tasks.flow.system import FlowPretraining, kaiming_init, scale_flow_heads
    from videoanyup.tasks.flow.weights import load_spynet
    from videoanyup.tasks.step_timer import StepTimer

    torch.manual_seed(args.seed)
    images = load_images(args.data, frame_stride=args.frame_stride, with_skimage=not args.no_skimage, min_side=128)
    log.info("%d source images", len(images))
    pairs = dict(crop=args.crop, max_motion=args.max_motion, max_layers=args.max_layers, low_light=args.low_light, large_motion=args.large_motion)
    train_set = SyntheticFlowPairs(images, length=args.steps * args.batch_size, seed=args.seed, **pairs)
    val_set = SyntheticFlowPairs(images, length=args.val_size, seed=args.seed + 1_000_003, **pairs)
    start = 0
    if args.resume:
        start = int(torch.load(args.resume, map_location="cpu", weights_only=False)["global_step"])
    loader = resumable_loader(train_set, start, args.batch_size, num_workers=args.num_workers)
    val_loader = DataLoader(val_set, batch_size=min(8, args.val_size), num_workers=0)

    spynet = load_spynet(args.init) if args.init else scale_flow_heads(kaiming_init(SPyNet()), args.head_scale)
    if not args.no_batch_norm:
        add_batch_norm(spynet)
    system = FlowPretraining(
        spynet, lr=args.lr, total_steps=args.steps, warmup_steps=args.warmup, window=args.window or None, seed=args.seed,
        tied_steps=args.tied_steps, huber_delta=args.huber_delta, teacher_steps=args.teacher_steps,
        teacher_noise=args.teacher_noise,
    )
    checkpoints = ModelCheckpoint(
        dirpath=out / "checkpoints", filename="step{step}", save_last=True, save_top_k=1,
        train_time_interval=datetime.timedelta(minutes=args.ckpt_minutes),
    )
    trainer = L.Trainer(
        accelerator=args.accelerator, devices=1, max_steps=args.steps, max_time=datetime.timedelta(minutes=args.max_minutes),
        val_check_interval=min(args.val_every, args.steps - start) if args.steps > start else 1,
        check_val_every_n_epoch=None, num_sanity_val_steps=0, gradient_clip_val=1.0, log_every_n_steps=10,
        callbacks=[checkpoints, StepTimer()], logger=CSVLogger(out, name="logs"), enable_progress_bar=not args.quiet,
        enable_model_summary=False, deterministic=False,
    )
    trainer.fit(system, loader, val_loader, ckpt_path=args.resume)
    trainer.save_checkpoint(out / "checkpoints" / "last.ckpt")
    spynet = spynet.cpu().eval()  # evaluated and saved on the CPU, wherever it trained
    if has_batch_norm(spynet):
        spynet = fold_batch_norm(spynet)
    return spynet, len(images), trainer.global_step


def run(args: argparse.Namespace) -> int:
    """Run `train-flow`; returns the exit status (2 for bad inputs, with a one-line message on stderr)."""
    import torch

    from videoanyup.checkpoint import save_checkpoint
    from videoanyup.tasks.flow.weights import load_spynet

    try:
        _check(args)
        if args.threads:
            torch.set_num_threads(args.threads)
        out = Path(args.out)
        if args.eval_only:
            _evaluate(args, load_spynet(args.weights), out)
            return 0
        began = time.time()
        spynet, n_images, steps_done = _train(args, out)
        minutes = (time.time() - began) / 60
        rows = _evaluate(args, spynet, out)
    except ValueError as error:  # VideoError included
        print(f"videoanyup train-flow: error: {error}", file=sys.stderr)
        return 2
    config = {
        "network": "SPyNet",
        "command": "videoanyup train-flow " + " ".join(shlex.quote(a) for a in sys.argv[1:] if a != "train-flow"),
        "seed": args.seed,
        "steps": steps_done,
        "steps_planned": args.steps,
        "batch_size": args.batch_size,
        "crop": args.crop,
        "window": args.window,
        "lr": args.lr,
        "tied_steps": args.tied_steps,
        "head_scale": args.head_scale,
        "batch_norm": not args.no_batch_norm,
        "huber_delta": args.huber_delta,
        "teacher_steps": args.teacher_steps,
        "teacher_noise": args.teacher_noise,
        "max_motion": args.max_motion,
        "low_light": args.low_light,
        "large_motion": args.large_motion,
        "init": args.init,
        "accelerator": args.accelerator,
        "data": list(args.data) + ([] if args.no_skimage else ["scikit-image images"]),
        "frame_stride": args.frame_stride,
        "source_images": n_images,
        "train_minutes": round(minutes, 1),
        "torch": torch.__version__,
        "sintel": rows,
    }
    save_checkpoint(out, spynet, config)
    if args.export:
        export = Path(args.export)
        export.mkdir(parents=True, exist_ok=True)
        for name in ("model.safetensors", "config.json", "sintel.json"):
            if (out / name).is_file():
                shutil.copy2(out / name, export / name)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="videoanyup train-flow", description=__doc__.splitlines()[0])
    add_arguments(parser)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
