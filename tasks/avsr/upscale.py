"""`videoanyup upscale`: a video file or frame folder in, an upscaled mp4 or PNG folder out.

The input is checked before anything is written (readable, not empty, one frame size); the weights are
loaded and the mode checked; then frames stream through the chunked / online upscaler into a writer that
puts the output in place only when the last frame is done, so a failure leaves no partial output.
"""

from __future__ import annotations

import logging
from fractions import Fraction
from pathlib import Path
from typing import Sequence

import torch

from videoanyup.functional.grid import output_size
from videoanyup.models.basicavsr import BasicAVSR
from videoanyup.tasks.avsr.inference import upscale_frames
from videoanyup.tasks.samples import resolve_source
from videoanyup.tasks.video_io import DEFAULT_FPS, VideoError, VideoWriter, iter_frames, probe, to_tensor, to_uint8

log = logging.getLogger(__name__)


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


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
    progress: bool = True,
) -> dict:
    """Upscale `source` into `target`; returns a summary (frames, sizes, fps, seconds).

    Args:
        source: a video file or a folder of PNG / JPEG frames (name order).
        target: `*.mp4` or a folder (PNG frames).
        model: the trained network.
        scale / size: `a`, `(a, b)` or `(H, W)` (exactly one).
        mode: propagation mode (None: the model's).
        chunk, overlap: temporal chunking of bidirectional mode.
        tile: side of the HR tiles the network computes at once (None: the config's).
        device: "auto", "cpu", "cuda", ….
        precision: "fp32", "bf16" or "fp16" (CUDA).
        fps: frame rate of an mp4 output (default: the input's, 25 for frame folders).
        crf, preset, lossless, pix_fmt: mp4 encoding (see `VideoWriter`).
        overwrite: replace an existing target.
    """
    import time

    from tqdm import tqdm

    source, target = resolve_source(source), Path(target)
    if source.resolve() == target.resolve():
        raise ValueError(f"source and target are the same path {str(source)!r}")
    info = probe(source)
    height, width = output_size(info.height, info.width, scale=scale, size=size)
    mode = model.check_mode(mode)
    if tile is not None:
        if tile < 8:
            raise ValueError(f"tile={tile} must be >= 8")
        model.upsampler.tile_size = tile
    dev = resolve_device(device)
    model = model.to(dev).eval()
    rate = Fraction(fps).limit_denominator(100000) if fps else (info.fps or DEFAULT_FPS)
    frames = (to_tensor(array[None])[0] for array in iter_frames(source))
    start = time.perf_counter()
    with VideoWriter(target, fps=rate, crf=crf, preset=preset, lossless=lossless, pix_fmt=pix_fmt, overwrite=overwrite) as writer:
        outputs = upscale_frames(
            model, frames, size=(height, width), mode=mode, chunk=chunk, overlap=overlap, device=dev, precision=precision
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
