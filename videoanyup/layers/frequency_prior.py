"""Laplacian-pyramid frequency prior (DESIGN.md §4.1).

The frame is split into band-pass levels plus the low-pass residual; each band is resized back to the
frame's size and weighted by learned per-band, per-channel scalars; their sum is the fused prior map,
which the feature extractor reads beside the frame itself. No pretrained network is involved.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from videoanyup.functional.laplacian import laplacian_pyramid


class FrequencyPrior(nn.Module):
    """`(N, C, h, w)` → fused band map `(N, C, h, w)`.

    Args:
        channels: C, the channels of the input (3 for RGB).
        levels: number of band-pass levels; the low-pass residual is added as one more band.
    """

    def __init__(self, channels: int = 3, levels: int = 3) -> None:
        super().__init__()
        self.levels = levels
        # One weight per band and channel; all ones makes the initial map close to the frame itself.
        self.band_weights = nn.Parameter(torch.ones(levels + 1, channels))

    def forward(self, x: Tensor) -> Tensor:
        size = tuple(x.shape[-2:])
        bands = laplacian_pyramid(x, self.levels)
        fused = torch.zeros_like(x)
        for weight, band in zip(self.band_weights, bands):
            if band.shape[-2:] != x.shape[-2:]:
                band = F.interpolate(band, size=size, mode="bilinear", align_corners=False)
            fused = fused + weight.view(1, -1, 1, 1) * band
        return fused
