"""Laplacian pyramid and its exact inverse (the frequency prior of DESIGN.md §4.1).

Level l of the Gaussian pyramid is a 5-tap binomial blur of level l − 1 subsampled by 2 (any size, odd
included). Band l is `G_l − expand(G_{l+1})`, where `expand` is a bilinear resize to the size of `G_l`;
the last entry is the low-pass residual `G_L`. `reconstruct_laplacian` inverts it exactly.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

_BINOMIAL_5 = (1.0, 4.0, 6.0, 4.0, 1.0)


def _blur_subsample(x: Tensor) -> Tensor:
    """Binomial 5×5 blur with reflect padding, then keep every second pixel: `(N, C, h, w)` → `(N, C, ⌈h/2⌉, ⌈w/2⌉)`."""
    c = x.shape[1]
    taps = torch.tensor(_BINOMIAL_5, device=x.device, dtype=x.dtype)
    taps = taps / taps.sum()
    kernel = (taps[:, None] * taps[None, :]).expand(c, 1, 5, 5)  # (C, 1, 5, 5), depthwise
    mode = "reflect" if min(x.shape[-2:]) > 2 else "replicate"
    padded = F.pad(x, (2, 2, 2, 2), mode=mode)
    return F.conv2d(padded, kernel, stride=2, groups=c)


def _expand(x: Tensor, size: tuple[int, int]) -> Tensor:
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def laplacian_pyramid(x: Tensor, levels: int) -> list[Tensor]:
    """Decompose `(N, C, h, w)` into `levels` band-pass maps (finest first) plus the low-pass residual.

    Returns:
        `levels + 1` tensors; entry l has shape `(N, C, h_l, w_l)` with `h_0 = h`, `h_{l+1} = ⌈h_l / 2⌉`.
    """
    if levels < 0:
        raise ValueError(f"levels must be >= 0, got {levels}")
    bands = []
    current = x
    for _ in range(levels):
        coarser = _blur_subsample(current)
        bands.append(current - _expand(coarser, tuple(current.shape[-2:])))
        current = coarser
    bands.append(current)
    return bands


def reconstruct_laplacian(bands: list[Tensor]) -> Tensor:
    """Invert `laplacian_pyramid`: `G_l = band_l + expand(G_{l+1})`, from the residual up."""
    current = bands[-1]
    for band in reversed(bands[:-1]):
        current = band + _expand(current, tuple(band.shape[-2:]))
    return current
