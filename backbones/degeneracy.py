"""Detect degenerate random backbones: a final feature map that is just the patch embedding again.

With timm's DINOv2 initialisation (LayerScale 1e-5) random blocks add almost nothing, and the output is
a per-token normalisation of a linear patch embedding: the mean cosine similarity between the two, token
by token, is ≈ 1 (DESIGN.md §5.6). Features like that carry no context and make upsampling trivially easy.
A random backbone used for training or evaluation must stay below `MAX_PATCH_EMBED_COSINE`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from videoanyup.backbones.base import Backbone

MAX_PATCH_EMBED_COSINE = 0.9


def patch_embedding_cosine(backbone: Backbone, video: Tensor) -> float:
    """Mean over tokens of cos(final feature, patch embedding) for `video` (B, T, 3, H, W) in [0, 1]."""
    with torch.no_grad():
        feats = backbone.extract(video)  # (B, T, C, h, w)
        embed = backbone.embed_patches(video)  # (B, T, C, h, w)
    return float(F.cosine_similarity(feats.float(), embed.float(), dim=2).mean())


def check_not_degenerate(
    backbone: Backbone, video: Tensor | None = None, *, threshold: float = MAX_PATCH_EMBED_COSINE
) -> float:
    """Raise `RuntimeError` if `backbone`'s output is (nearly) its patch embedding; returns the cosine.

    Args:
        video: (B, T, 3, H, W) in [0, 1]; default one random frame of 3 × 4 patches drawn from a private
            generator, so torch's global random state is left as it was.
        threshold: the largest mean cosine accepted.
    """
    if video is None:
        generator = torch.Generator().manual_seed(0)
        p = backbone.patch_size
        video = torch.rand(1, 1, 3, 3 * p, 4 * p, generator=generator)
    cosine = patch_embedding_cosine(backbone, video)
    if not cosine < threshold:
        raise RuntimeError(
            f"backbone {backbone.name!r} is degenerate: its features have mean cosine {cosine:.3f} (limit {threshold}) "
            f"to its patch embedding, i.e. its blocks do almost nothing; with random weights set LayerScale to 1 "
            f"(timm's DINOv2 default is 1e-5)"
        )
    return cosine
