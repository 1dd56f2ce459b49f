"""Upscaling videos of any length with bounded memory.

Bidirectional mode needs future frames, so a long video is cut into temporal chunks of `chunk` frames,
each run with `overlap` extra frames of context on both sides, and only the chunk's own outputs are kept.
The online modes ("unidirectional", "lookahead") use the network's stream, frame by frame. Large frames
are handled by the network's own HR tiling (`tile_size`). Memory is therefore set by the chunk and tile
sizes, not by the number of frames.
"""

from __future__ import annotations

import contextlib
from typing import Iterable, Iterator, Sequence

import torch
from torch import Tensor

from videoanyup.models.basicavsr import BasicAVSR

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def autocast(device: torch.device, precision: str):
    """bf16 / fp16 autocast on CUDA; fp32 (no autocast) elsewhere or when asked."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision={precision!r} must be one of {sorted(PRECISIONS)}")
    dtype = PRECISIONS[precision]
    if dtype is None:
        return contextlib.nullcontext()
    if device.type != "cuda":
        raise ValueError(f"precision={precision!r} needs a CUDA device (got {device}); use fp32 on {device.type}")
    return torch.autocast(device_type="cuda", dtype=dtype)


def upscale_frames(
    model: BasicAVSR,
    frames: Iterable[Tensor],
    *,
    size: Sequence[int],
    mode: str | None = None,
    chunk: int = 32,
    overlap: int = 4,
    device: torch.device | str = "cpu",
    precision: str = "fp32",
    compile: bool | str = False,
) -> Iterator[Tensor]:
    """Upscale a stream of LR frames; yields HR frames in order.

    Args:
        model: the network (moved to `device` by the caller).
        frames: LR frames `(3, h, w)` in [0, 1], all the same size.
        size: `(H, W)` of the output frames.
        mode: propagation mode (None: the model's).
        chunk: bidirectional: frames per temporal chunk.
        overlap: bidirectional: context frames on each side of a chunk.
        device: where the network runs.
        precision: "fp32", or "bf16" / "fp16" (CUDA only).
        compile: run the stream's per-frame step through `torch.compile` (True, or a backend's name); the
            online modes only (`check_compile`).
    Yields:
        `(3, H, W)` float32 on the CPU.
    """
    mode = model.check_mode(mode)
    check_compile(compile, mode)
    if chunk < 1 or overlap < 0:
        raise ValueError(f"chunk={chunk} must be >= 1 and overlap={overlap} >= 0")
    device = torch.device(device)
    size = (int(size[0]), int(size[1]))
    with torch.inference_mode(), autocast(device, precision):
        if mode == "bidirectional":
            yield from _chunked(model, frames, size, chunk, overlap, device)
        else:
            stream = model.stream(size=size, mode=mode, compile=compile)
            for frame in frames:
                for out in stream.push(frame[None].to(device)):
                    yield out[0].float().cpu()
            for out in stream.flush():
                yield out[0].float().cpu()


def check_compile(compile: bool | str, mode: str) -> None:
    """`compile` is False, True or a backend's name, and asks for a mode that streams (its per-frame step is
    what compiles; bidirectional mode runs whole chunks of the clip)."""
    if not isinstance(compile, (bool, str)):
        raise ValueError(f"--compile must be on/off or a torch.compile backend name, got {compile!r}")
    if compile and mode == "bidirectional":
        raise ValueError(
            "--compile compiles the per-frame step of the stream; bidirectional mode has none "
            "(use --mode unidirectional or lookahead, or leave --compile out)"
        )


def _chunked(model: BasicAVSR, frames: Iterable[Tensor], size, chunk: int, overlap: int, device) -> Iterator[Tensor]:
    """Windows of `chunk + 2·overlap` frames (shifted right at the start, shorter only at the end), so
    the largest window, and with it the memory, is the same for every clip longer than one window."""
    source = iter(frames)
    window_size = chunk + 2 * overlap
    buffer: list[Tensor] = []  # LR frames first … first + len(buffer) − 1
    first, next_out, done = 0, 0, False
    while True:
        start = max(0, next_out - overlap)
        while not done and first + len(buffer) < start + window_size:
            try:
                buffer.append(next(source))
            except StopIteration:
                done = True
        available = first + len(buffer)
        if next_out >= available:
            return
        out_end = min(next_out + chunk, available)
        stop = min(available, start + window_size)
        window = torch.stack(buffer[start - first : stop - first])[None].to(device)  # (1, t, 3, h, w)
        out = model(window, size=size, mode="bidirectional")[0]  # (t, 3, H, W)
        kept = [out[i].float().cpu().clone() for i in range(next_out - start, out_end - start)]  # (3, H, W) each
        del out, window  # nothing of this chunk's output stays alive during the next chunk
        yield from kept
        kept = []
        next_out = out_end
        drop = next_out - overlap - first
        if drop > 0:
            del buffer[:drop]
            first += drop
