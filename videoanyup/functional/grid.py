"""The high-resolution grid: output sizes, HR → LR coordinates and integer-exact phases (DESIGN.md §4.5).

With `align_corners=False` semantics, HR pixel centre i of an axis of length H over an LR axis of length h
sits at LR coordinate `u_i = ((2i + 1)·h − H) / (2H)` (LR pixel centres at 0, 1, …, h − 1). Its nearest LR
pixel is `n_i = ⌊(2i + 1)·h / (2H)⌋` and its offset from that centre, `u_i − n_i ∈ [−½, ½)`, depends only on
`(2i + 1)·h mod 2H`. Consecutive pixels repeat the same offsets with period `P = H / gcd(H, h)`, so the
phase index `i mod P` labels the P distinct offsets exactly — no floating-point quantisation.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor

Region = tuple[int, int, int, int]  # (top, bottom, left, right) in HR pixels, half-open


def round_half_up(value: float) -> int:
    """`round` without banker's rounding: 2.5 → 3."""
    return int(math.floor(value + 0.5))


def pair(value: float | Sequence[float], name: str) -> tuple[float, float]:
    """A scale given as one number or an (a, b) pair, checked to be finite and > 0."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        values = (float(value), float(value))
    elif isinstance(value, (tuple, list)) and len(value) == 2:
        values = (float(value[0]), float(value[1]))
    else:
        raise ValueError(f"{name} must be a positive number or a pair (a, b) of positive numbers, got {value!r}")
    if not all(math.isfinite(v) and v > 0 for v in values):
        raise ValueError(f"{name} must be finite and > 0, got {value!r}")
    return values


def output_size(
    h: int,
    w: int,
    *,
    scale: float | Sequence[float] | None = None,
    size: Sequence[int] | None = None,
) -> tuple[int, int]:
    """The HR size `(H, W)`: `size` as given, or `(round(a·h), round(b·w))` for `scale = (a, b)`.

    Exactly one of `scale` and `size` must be given.
    """
    if (scale is None) == (size is None):
        raise ValueError(
            "give exactly one of scale=(a, b) (output = round(a*h), round(b*w)) and size=(H, W); "
            f"got scale={scale!r}, size={size!r}"
        )
    if size is not None:
        if (
            not isinstance(size, (tuple, list, torch.Size))
            or len(size) != 2
            or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in size)
        ):
            raise ValueError(f"size must be a pair (H, W) of positive integers, got {size!r}")
        return int(size[0]), int(size[1])
    a, b = pair(scale, "scale")
    if not (math.isfinite(a * h) and math.isfinite(b * w)):
        raise ValueError(f"scale={scale!r} is too large: the output size of {h}×{w} overflows")
    out = (max(1, round_half_up(a * h)), max(1, round_half_up(b * w)))
    return out


def full_region(size: tuple[int, int]) -> Region:
    return (0, size[0], 0, size[1])


def check_region(region: Sequence[int] | None, size: tuple[int, int]) -> Region:
    """A region `(top, bottom, left, right)` inside an HR grid of `size`; None means the whole grid."""
    if region is None:
        return full_region(size)
    if len(region) != 4 or not all(isinstance(v, int) for v in region):
        raise ValueError(f"region must be (top, bottom, left, right) integers, got {region!r}")
    top, bottom, left, right = region
    if not (0 <= top < bottom <= size[0] and 0 <= left < right <= size[1]):
        raise ValueError(f"region {tuple(region)} must lie inside the output grid (H, W) = {size}")
    return (top, bottom, left, right)


def num_phases(lr_len: int, hr_len: int) -> int:
    """Number of distinct sub-pixel offsets along one axis: `H / gcd(H, h)`."""
    return hr_len // math.gcd(hr_len, lr_len)


@dataclass(frozen=True)
class AxisPhases:
    """HR positions `start..stop-1` of one axis, described against the LR grid.

    Attributes:
        nearest: `(n,)` int64, index of the nearest LR pixel centre (may be -1 or h at the far edges
            only when H < h, never otherwise).
        phase: `(n,)` int64, phase index `i mod P` in `[0, P)`.
        offset: `(n,)` float64, `u_i − nearest` in LR pixels, in `[−½, ½)`.
        coord: `(n,)` float64, the LR coordinate `u_i`.
        period: P, the number of distinct phases.
        phase_offsets: `(P,)` float64, the offset of each phase index.
    """

    nearest: Tensor
    phase: Tensor
    offset: Tensor
    coord: Tensor
    period: int
    phase_offsets: Tensor


@functools.lru_cache(maxsize=256)
def axis_phases(lr_len: int, hr_len: int, start: int = 0, stop: int | None = None) -> AxisPhases:
    """Integer-exact phases of HR positions `start..stop-1` (default: the whole axis). CPU tensors.

    Memoised (tiles of a video ask for the same axes every frame): treat the tensors as read-only. They are
    made outside inference mode, so a memoised answer can also serve autograd later.
    """
    with torch.inference_mode(False):
        return _axis_phases(lr_len, hr_len, start, stop)


def _axis_phases(lr_len: int, hr_len: int, start: int, stop: int | None) -> AxisPhases:
    stop = hr_len if stop is None else stop
    index = torch.arange(start, stop, dtype=torch.int64)
    numerator = (2 * index + 1) * lr_len  # (2i + 1)·h
    nearest = torch.div(numerator, 2 * hr_len, rounding_mode="floor")
    remainder = numerator - nearest * 2 * hr_len  # (2i + 1)·h mod 2H, in [0, 2H)
    offset = (remainder - hr_len).to(torch.float64) / (2 * hr_len)
    coord = (numerator - hr_len).to(torch.float64) / (2 * hr_len)
    period = num_phases(lr_len, hr_len)
    all_phases = torch.arange(period, dtype=torch.int64)
    phase_remainder = ((2 * all_phases + 1) * lr_len) % (2 * hr_len)
    phase_offsets = (phase_remainder - hr_len).to(torch.float64) / (2 * hr_len)
    return AxisPhases(
        nearest=nearest,
        phase=index % period,
        offset=offset,
        coord=coord,
        period=period,
        phase_offsets=phase_offsets,
    )

