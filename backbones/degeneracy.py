"""Detect degenerate random backbones: features that see nothing beyond their own cell.

With timm's DINOv2 initialisation (LayerScale 1e-5) random blocks add almost nothing, and the output is
a per-token normalisation of a linear patch embedding: the mean cosine similarity between the two, token
by token, is ≈ 1 (DESIGN.md §5.6). ConvNeXt (gamma 1e-6) and ResNet (zero-initialised last BatchNorm)
have the same trap: their random stages then only re-embed each cell's own pixels. Features like that
carry no context and make upsampling trivially easy. Two checks, both required of a random backbone:

- **context** (every backbone, every level): replace every pixel outside one cell's own square (stride ×
  stride around its centre, `GridGeometry`) and measure how much that cell's feature moves, relative to
  its norm. A backbone whose blocks work mixes its neighbourhood in; a degenerate one does not move
  (≈ 1e-5). It must move by at least `MIN_CONTEXT_CHANGE`.
- **patch embedding** (token models, `Backbone.has_patch_embedding`): the mean cosine between the final
  features and the patch embedding must stay below `MAX_PATCH_EMBED_COSINE`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from videoanyup.backbones.base import Backbone

MAX_PATCH_EMBED_COSINE = 0.9
MIN_CONTEXT_CHANGE = 0.05


def patch_embedding_cosine(backbone: Backbone, video: Tensor) -> float:
    """Mean over tokens of cos(final feature, patch embedding) for `video` (B, T, 3, H, W) in [0, 1]."""
    with torch.no_grad():
        feats = backbone.extract(video)  # (B, T, C, h, w)
        embed = backbone.embed_patches(video)  # (B, T, C, h, w)
    return float(F.cosine_similarity(feats.float(), embed.float(), dim=2).mean())


def context_change(backbone: Backbone, *, seed: int = 0) -> list[float]:
    """Per level: the relative change of a central cell's feature when every pixel outside its own square
    is redrawn (module docstring). Frames of about 4 × 5 cells of the coarsest level, random pixels."""
    m = backbone.size_multiple
    coarsest = max(level.stride for level in backbone.levels)
    height = m * max(2, math.ceil(4 * coarsest / m))
    width = m * max(3, math.ceil(5 * coarsest / m))
    generator = torch.Generator().manual_seed(seed)
    first = torch.rand(1, 1, 3, height, width, generator=generator)
    second = torch.rand(1, 1, 3, height, width, generator=generator)
    with torch.no_grad():
        reference = backbone.extract_levels(first)  # per level (1, 1, C, h, w)
    changes = []
    for k, geometry in enumerate(backbone.geometries(height, width)):
        i, j = geometry.grid[0] // 2, geometry.grid[1] // 2
        cy, cx = geometry.offset[0] + geometry.stride[0] * i, geometry.offset[1] + geometry.stride[1] * j
        half_y, half_x = geometry.stride[0] / 2, geometry.stride[1] / 2
        top, bottom = max(0, math.floor(cy - half_y)), min(height, math.ceil(cy + half_y))
        left, right = max(0, math.floor(cx - half_x)), min(width, math.ceil(cx + half_x))
        mixed = second.clone()
        mixed[..., top:bottom, left:right] = first[..., top:bottom, left:right]  # the cell's square kept
        with torch.no_grad():
            b = backbone.extract_levels(mixed)[k][0, 0, :, i, j].float()  # (C,)
        a = reference[k][0, 0, :, i, j].float()
        changes.append(float((a - b).norm() / a.norm().clamp_min(1e-12)))
    return changes


def check_not_degenerate(
    backbone: Backbone,
    video: Tensor | None = None,
    *,
    threshold: float = MAX_PATCH_EMBED_COSINE,
    min_context: float = MIN_CONTEXT_CHANGE,
) -> float:
    """Raise `RuntimeError` if `backbone` is degenerate (module docstring); returns the smallest context change.

    Args:
        video: (B, T, 3, H, W) in [0, 1] for the patch-embedding check; default one random frame of 3 × 4
            patches drawn from a private generator, so torch's global random state is left as it was.
        threshold: the largest mean cosine to the patch embedding accepted (token models).
        min_context: the smallest relative context change accepted (every level).
    """
    if backbone.has_patch_embedding:
        if video is None:
            generator = torch.Generator().manual_seed(0)
            m = backbone.size_multiple
            video = torch.rand(1, 1, 3, 3 * m, 4 * m, generator=generator)
        cosine = patch_embedding_cosine(backbone, video)
        if not cosine < threshold:
            raise RuntimeError(
                f"backbone {backbone.name!r} is degenerate: its features have mean cosine {cosine:.3f} (limit "
                f"{threshold}) to its patch embedding, i.e. its blocks do almost nothing; with random weights set "
                f"LayerScale to 1 (timm's DINOv2 default is 1e-5)"
            )
    changes = context_change(backbone)
    smallest = min(changes)
    if not smallest >= min_context:
        raise RuntimeError(
            f"backbone {backbone.name!r} is degenerate: redrawing every pixel outside a cell moves its feature by "
            f"{smallest:.2g} of its norm (limit {min_context}), i.e. its layers see nothing beyond the cell; with "
            f"random weights open the residual branches (timm_backbones.open_residual_branches)"
        )
    return smallest
