"""Photometric augmentation of the guidance for the consistency term (DESIGN.md §5.6).

Brightness, contrast and saturation scaled by factors drawn from `[1 − s, 1 + s]` and a small additive
colour shift, one draw per sample, from a seeded generator (so a resumed run augments identically).
Geometry is untouched: the augmented guidance still describes the same pixels.
"""

from __future__ import annotations

import torch
from torch import Tensor

LUMA = (0.299, 0.587, 0.114)


def photometric_jitter(images: Tensor, generator: torch.Generator, *, strength: float = 0.3, shift: float = 0.05) -> Tensor:
    """Augmented copies of `(N, 3, H, W)` RGB in [0, 1] (one draw per frame), clamped to [0, 1]."""
    n = images.shape[0]
    draws = torch.rand(n, 6, generator=generator)  # per frame: brightness, contrast, saturation, 3 shifts
    brightness, contrast, saturation = (1 + strength * (2 * draws[:, i] - 1) for i in range(3))
    colour = shift * (2 * draws[:, 3:] - 1)  # (N, 3)

    def per_frame(v: Tensor) -> Tensor:
        return v.to(images).view(n, *([1] * (images.dim() - 1)))

    x = images * per_frame(brightness)
    luma = (x * x.new_tensor(LUMA).view(1, 3, 1, 1)).sum(dim=1, keepdim=True)  # (N, 1, H, W)
    mean = luma.mean(dim=(-2, -1), keepdim=True)
    x = (x - mean) * per_frame(contrast) + mean
    x = (x - luma) * per_frame(saturation) + luma
    x = x + colour.to(images).view(n, 3, 1, 1)
    return x.clamp(0.0, 1.0)
