"""Fidelity of upsampled features: do they agree with what the backbone itself sees at a finer grid?

The frame (at the probe's size, grid g = H'/p × W'/p) is upscaled 2× (bicubic, clamped to [0, 1]) and
run through the backbone, which gives features on the grid 2g. The upsampled features `(C, H', W')` are
area-pooled to 2g, and the fidelity is the mean cosine similarity of the two over the grid. Blurring
raises temporal consistency but lowers this, so the probe reports both side by side.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def reference_features(backbone, frames: Tensor) -> Tensor:
    """Backbone features of `(T, 3, H', W')` frames upscaled 2×: `(T, C, 2h, 2w)`."""
    big = F.interpolate(frames.float(), scale_factor=2, mode="bicubic", align_corners=False).clamp_(0, 1)
    with torch.inference_mode():
        return backbone.extract(big[None])[0].float()


def cosine_map(upsampled: Tensor, reference: Tensor) -> Tensor:
    """`(T, 2h, 2w)` cosine of `(T, C, H', W')` area-pooled to the grid of `reference` `(T, C, 2h, 2w)`."""
    pooled = F.interpolate(upsampled.float(), size=tuple(reference.shape[-2:]), mode="area")  # (T, C, 2h, 2w)
    return F.cosine_similarity(pooled, reference.float(), dim=1, eps=1e-8)


def fidelity(upsampled: Tensor, reference: Tensor) -> list[float]:
    """Per frame: mean cosine of `(T, C, H', W')` area-pooled to the grid of `reference` `(T, C, 2h, 2w)`."""
    return [float(c.mean()) for c in cosine_map(upsampled, reference)]
