"""`videoanyup upscale`: a video file or frame folder in, an upscaled video file or PNG folder out.

Before any work: the output's extension, location, ownership and file system are checked
(`video_io.output_kind`, `output_guard.check_output`), the frame rate and encoder preset too; the input's
frame size is read from its header and refused above `max_pixels` (before anything is decoded), the
output frame size is computed from it and refused above `max_pixels` or below one pixel per side; then the
input is probed (readable, not empty, one frame size), the free space is compared with a low estimate of
the output's size, and the mode is checked. Frames then stream through the chunked / online upscaler into
a writer that puts the output in place only when the last frame is done, so a failure leaves no partial
output.
"""

from __future__ import annotations

import logging
import math
from fractions import Fraction
from pathlib import Path
from typing import Sequence

import torch

from videoanyup.functional.grid import output_size
from videoanyup.models.basicavsr import BasicAVSR
from videoanyup.tasks.avsr.inference import check_compile, upscale_frames
from videoanyup.tasks import output_guard
from videoanyup.tasks.samples import resolve_source
from videoanyup.tasks.frame_folder import FrameError, check_frame_pixels
from videoanyup.tasks.video_io import (
    DEFAULT_FPS,
    X264_PRESETS,
    VideoError,
    VideoWriter,
    check_frame_rate,
    estimate_output_bytes,
    first_frame_size,
    iter_frames,
    output_kind,
    probe,
    to_tensor,
    to_uint8,
)
from videoanyup.validation import MAX_OUTPUT_PIXELS
from videoanyup.validation import check_output_size as check_api_output_size

log = logging.getLogger(__name__)

MAX_PIXELS = MAX_OUTPUT_PIXELS  # 8K UHD: the default limit on the pixels of one output frame (as in the API)


def resolve_device(device: str | torch.device) -> torch.device:
    """"auto" (CUDA when available, else CPU) or a torch device string; `ValueError` naming --device when
    the string is not a device or names an accelerator this machine does not have."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise ValueError(f"--device {device!r} is not a device: use auto, cpu, cuda or cuda:N ({error})") from error
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ValueError(f"--device {device!r}: no CUDA device is available here; use --device cpu (or auto)")
        if dev.index is not None and dev.index >= count:
            raise ValueError(f"--device {device!r}: this machine has {count} CUDA device(s), cuda:0 … cuda:{count - 1}")
    elif dev.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise ValueError(f"--device {device!r}: MPS is not available here; use --device cpu (or auto)")
    elif dev.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"--device {device!r}: use auto, cpu, cuda or cuda:N")
    return dev


def check_fps(fps: float | None, kind: str = ".mp4") -> Fraction | None:
    """`fps` as a Fraction, None kept; `ValueError` naming --fps unless it is a finite number > 0 in the range
    the output container `kind` stores (`video_io.check_frame_rate`)."""
    if fps is None:
        return None
    if isinstance(fps, bool) or not (isinstance(fps, (int, float, Fraction)) and math.isfinite(fps) and fps > 0):
        raise ValueError(f"--fps must be a finite number > 0, got {fps!r}")
    return check_frame_rate(fps, kind, "--fps")


def resolve_output_size(height: int, width: int, scale, size, max_pixels: int, target: Path, frames: int | None = None):
    """The output frame size `(H, W)` of `height × width` input frames, refused (naming --scale / --size and
    --max-pixels) when a side would be under one pixel, or the size overflows or exceeds `max_pixels`."""
    try:
        hr_size = output_size(height, width, scale=scale, size=size)
        if scale is not None:
            check_api_output_size(hr_size, (height, width), scale=scale, max_pixels=2**63)
    except ValueError as error:
        raise ValueError(f"--{'scale' if scale is not None else 'size'}: {error}") from error
    check_output_size(*hr_size, frames, max_pixels, target)
    return hr_size


def _gigabytes(count: float) -> str:
    return f"{count / 1e9:.3g} GB"


def check_output_size(height: int, width: int, frames: int | None, max_pixels: int, target: Path) -> None:
    """Refuse an output frame above `max_pixels` pixels, naming its size, its memory and the option."""
    pixels = height * width
    per_frame = 3 * 4 * pixels  # one float32 RGB frame
    if pixels > max_pixels:
        raise ValueError(
            f"the output frames would be {height}×{width} = {pixels / 1e6:,.1f} megapixels each "
            f"({_gigabytes(per_frame)} per frame as float32, {_gigabytes(3 * pixels)} as 8-bit RGB), above the limit "
            f"--max-pixels {max_pixels:,} (default {MAX_PIXELS:,} = 7680×4320, 8K UHD); pass --max-pixels {pixels} "
            "or more to allow it"
        )
    if frames is not None and output_kind(target) == "folder":  # PNGs: at most raw size, usually less
        raw = 3 * pixels * frames
        free = output_guard.free_bytes(target)
        if raw > free:
            log.warning(
                "%s: %d PNG frames of %d×%d may need up to %s, and %s is free", target, frames, height, width,
                _gigabytes(raw), _gigabytes(free),
            )


def upscale(
    source: str | Path,
    target: str | Path,
    model: BasicAVSR,
    *,
    scale: float | tuple[float, float] | None = None,
    size: Sequence[int] | None = None,
    mode: str | None = None,
    chunk: int = 32,
    overlap: int = 4,
    tile: int | None = None,
    device: str = "auto",
    precision: str = "fp32",
    fps: float | None = None,
    crf: int = 18,
    preset: str = "medium",
    lossless: bool = False,
    pix_fmt: str = "yuv420p",
    overwrite: bool = False,
    max_pixels: int = MAX_PIXELS,
    progress: bool = True,
    compile: bool | str = False,
) -> dict:
    """Upscale `source` into `target`; returns a summary (frames, sizes, fps, seconds).

    Args:
        source: a video file or a folder of PNG / JPEG frames (natural name order).
        target: a video file (`video_io.OUTPUT_FORMATS`: .mp4, .m4v, .mkv, .mov, .avi, .webm, .gif) or a
            name without an extension for a folder of PNG frames.
        model: the trained network.
        scale / size: `a`, `(a, b)` or `(H, W)` (exactly one).
        mode: propagation mode (None: the model's).
        chunk, overlap: temporal chunking of bidirectional mode.
        tile: side of the HR tiles the network computes at once (None: the config's).
        device: "auto", "cpu", "cuda", ….
        precision: "fp32", "bf16" or "fp16" (CUDA).
        fps: frame rate of a video output (default: the input's, 25 for frame folders).
        crf, preset, lossless, pix_fmt: video encoding (see `VideoWriter`).
        overwrite: replace an existing target that an earlier run wrote (see `output_guard`).
        max_pixels: the most pixels an output frame may have (default 7680×4320).
        compile: run each frame's step through `torch.compile` (True: inductor, or a backend's name);
            unidirectional and look-ahead modes (the stream's step).
    """
    import time

    from tqdm import tqdm

    source, target = resolve_source(source), Path(target)
    kind = output_kind(target)
    output_guard.check_output(target, folder=kind == "folder", overwrite=overwrite, inputs=[source])
    rate = check_fps(fps, kind)
    if preset not in X264_PRESETS:
        raise ValueError(f"--preset {preset!r} is not an encoder preset; use one of {', '.join(X264_PRESETS)}")
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, int) or max_pixels < 1:
        raise ValueError(f"--max-pixels must be a positive integer, got {max_pixels!r}")
    dev = resolve_device(device)
    first_height, first_width = first_frame_size(source)
    try:
        check_frame_pixels(first_width, first_height, str(source), max_pixels)  # decoding it would take this much
    except FrameError as error:
        raise VideoError(f"input {error}") from error
    resolve_output_size(first_height, first_width, scale, size, max_pixels, target)
    info = probe(source)
    height, width = resolve_output_size(info.height, info.width, scale, size, max_pixels, target, info.num_frames)
    if rate is None and info.fps is not None:
        try:
            check_frame_rate(info.fps, kind)
        except VideoError as error:
            raise ValueError(f"the input's frame rate: {error}; pass --fps") from error
    rate = rate or info.fps or DEFAULT_FPS
    writer = VideoWriter(
        target, fps=rate, crf=crf, preset=preset, lossless=lossless, pix_fmt=pix_fmt, overwrite=overwrite,
        inputs=(source,), needed_bytes=estimate_output_bytes(kind, info.num_frames, height, width, lossless=lossless),
    )
    mode = model.check_mode(mode)
    check_compile(compile, mode)
    if tile is not None:
        if tile < 8:
            raise ValueError(f"tile={tile} must be >= 8")
        model.upsampler.tile_size = tile
    model = model.to(dev).eval()
    frames = (to_tensor(array[None])[0] for array in iter_frames(source, max_pixels=max_pixels))
    start = time.perf_counter()
    with writer:
        outputs = upscale_frames(
            model, frames, size=(height, width), mode=mode, chunk=chunk, overlap=overlap, device=dev, precision=precision,
            compile=compile,
        )
        for out in tqdm(outputs, total=info.num_frames, unit="frame", desc="upscale", disable=not progress):
            writer.write(to_uint8(out))
        if writer.count != info.num_frames:
            raise VideoError(
                f"{str(source)!r} is truncated: decoded {writer.count} of the {info.num_frames} frames it declares"
            )
    seconds = time.perf_counter() - start
    return {
        "source": str(source),
        "target": str(target),
        "frames": info.num_frames,
        "input": [info.height, info.width],
        "output": [height, width],
        "mode": mode,
        "fps": float(rate),
        "seconds": seconds,
        "frames_per_second": info.num_frames / seconds if seconds > 0 else float("inf"),
    }
