"""Fidelity of upsampled features: do they agree with what the backbone itself sees at a finer grid?

The frame (at the probe's size, grid g = H'/p × W'/p) is upscaled 2× (bicubic, clamped to [0, 1]) and
run through the backbone, which gives features on the grid 2g. The upsampled features `(C, H', W')` are
area-pooled to 2g, and the fidelity is the mean cosine similarity of the two over the grid. Blurring
raises temporal consistency but lowers this, so the probe reports both side by side.

Where the reference's cells do not tile the frame (a CNN level: `reference_geometry`), each is compared
with the upsampled features pooled over its own square: the map is resampled over the span the cells tile
before the area pooling (`grid_geometry.resample_to_span`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from videoanyup.functional.grid_geometry import GridGeometry, resample_to_span


def reference_features(backbone, frames: Tensor) -> Tensor:
    """Backbone features of `(T, 3, H', W')` frames upscaled 2×: `(T, C, 2h, 2w)`."""
    big = F.interpolate(frames.float(), scale_factor=2, mode="bicubic", align_corners=False).clamp_(0, 1)
    with torch.inference_mode():
        return backbone.extract(big[None])[0].float()


def reference_geometry(backbone, frames: Tensor) -> GridGeometry:
    """Where the cells of `reference_features(backbone, frames)` sit on the `(T, 3, H', W')` frames."""
    height, width = frames.shape[-2:]
    return backbone.geometry(2 * height, 2 * width).resized((height, width))


def cosine_map(upsampled: Tensor, reference: Tensor, geometry: GridGeometry | None = None) -> Tensor:
    """`(T, 2h, 2w)` cosine of `(T, C, H', W')` area-pooled to the grid of `reference` `(T, C, 2h, 2w)`, each
    reference cell over its own square when `geometry` (`reference_geometry`) is given and not a tiling."""
    upsampled = upsampled.float()
    if geometry is not None and not geometry.is_tiling():
        upsampled = resample_to_span(upsampled, geometry)  # (T, C, Hs, Ws) over the cells' span
    pooled = F.interpolate(upsampled, size=tuple(reference.shape[-2:]), mode="area")  # (T, C, 2h, 2w)
    return F.cosine_similarity(pooled, reference.float(), dim=1, eps=1e-8)


def fidelity(upsampled: Tensor, reference: Tensor, geometry: GridGeometry | None = None) -> list[float]:
    """Per frame: mean cosine of `(T, C, H', W')` area-pooled to the grid of `reference` `(T, C, 2h, 2w)`
    (`geometry`: see `cosine_map`)."""
    return [float(c.mean()) for c in cosine_map(upsampled, reference, geometry)]
