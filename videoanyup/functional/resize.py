"""Resizing: degradation (bicubic / antialiased downsampling) and bilinear sampling of any HR region.

`bilinear_upsample` reproduces `F.interpolate(x, size, mode="bilinear", align_corners=False)` but can
return any rectangular region of the output on its own, which the tiled upsamplers need.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from videoanyup.functional.grid import Region, check_region


def downsample(x: Tensor, size: Sequence[int], *, antialias: bool = False) -> Tensor:
    """Bicubic resize of `(..., C, H, W)` to `(..., C, h, w)` = `size`.

    `antialias=False` is torch's plain bicubic (the degradation of the AVSR papers, DESIGN.md §4.7);
    `antialias=True` low-pass filters first, like MATLAB's / PIL's `imresize`. Values are not clamped.
    """
    *lead, c, height, width = x.shape
    flat = x.reshape(-1, c, height, width)
    out = F.interpolate(flat, size=tuple(size), mode="bicubic", align_corners=False, antialias=antialias)
    return out.reshape(*lead, c, *out.shape[-2:])


def _axis_taps(lr_len: int, hr_len: int, start: int, stop: int, device, dtype) -> tuple[Tensor, Tensor, Tensor]:
    """Bilinear taps `(i0, i1, frac)` of HR positions `start..stop-1` as `F.interpolate` computes them."""
    index = torch.arange(start, stop, device=device, dtype=torch.float64)
    source = ((index + 0.5) * (lr_len / hr_len) - 0.5).clamp(min=0.0)
    i0 = source.floor().long().clamp(max=lr_len - 1)
    i1 = (i0 + 1).clamp(max=lr_len - 1)
    frac = (source - i0.to(torch.float64)).to(dtype)
    return i0, i1, frac


def bilinear_upsample(x: Tensor, size: Sequence[int], region: Region | None = None) -> Tensor:
    """Bilinear resize (align_corners=False) of `(..., C, h, w)` to `size = (H, W)`, optionally a region.

    Args:
        x: `(..., C, h, w)`.
        size: `(H, W)` of the full output grid.
        region: `(top, bottom, left, right)` of the output to compute; None for all of it.
    Returns:
        `(..., C, bottom - top, right - left)`.
    """
    h, w = x.shape[-2:]
    top, bottom, left, right = check_region(region, (int(size[0]), int(size[1])))
    r0, r1, rf = _axis_taps(h, int(size[0]), top, bottom, x.device, x.dtype)
    c0, c1, cf = _axis_taps(w, int(size[1]), left, right, x.device, x.dtype)
    rows = torch.lerp(x.index_select(-2, r0), x.index_select(-2, r1), rf[:, None])  # (..., C, th, w)
    return torch.lerp(rows.index_select(-1, c0), rows.index_select(-1, c1), cf)  # (..., C, th, tw)
