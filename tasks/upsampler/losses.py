"""Losses of VideoAnyUp training (DESIGN.md §5.6): feature distance, consistency terms, the temporal term.

**Feature distance.** For two feature maps `pred`, `target` of shape `(…, C, H, W)`, per pixel

    d(p, t) = (1 − cos(p, t)) + mean_c (mm(p)_c − mm(t)_c)²,   mm(v) = (v − min_c v) / (max_c v − min_c v + ε)

i.e. the cosine distance of the raw vectors plus the MSE of the per-vector min-max normalised vectors
(each vector mapped to [0, 1] over its own C channels). The cosine term is invariant to a positive
rescaling of either vector, the MSE term to any positive affine map `a·v + b` (a > 0) of either vector,
so the loss compares directions and shapes, not the backbone's per-token magnitude. Both are computed
in float32 (also under bf16 autocast). `feature_loss` is the mean of `d` over all pixels.

**Temporal term.** Output `y_t` against the output of t−1 warped by the flow t→t−1 (backward warping,
border padding), on pixels that pass the forward–backward check of Sundaram et al. (2010):
`|f_fw + f_bw(p + f_fw)|² < α (|f_fw|² + |f_bw(p + f_fw)|²) + β` and `p + f_fw` inside the frame.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from videoanyup.functional.warp import base_grid, flow_warp

EPS = 1e-6
OCCLUSION_ALPHA = 0.01
OCCLUSION_BETA = 0.5


def minmax_normalise(x: Tensor, eps: float = EPS) -> Tensor:
    """Each vector along the channel axis −3 mapped to [0, 1]: `(…, C, H, W)` → same shape."""
    low = x.amin(dim=-3, keepdim=True)
    high = x.amax(dim=-3, keepdim=True)
    return (x - low) / (high - low + eps)


def feature_distance(pred: Tensor, target: Tensor) -> Tensor:
    """Per-pixel distance `d` of the module docstring: `(…, C, H, W)` ×2 → `(…, H, W)` float32."""
    if pred.shape != target.shape:
        raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} must have the same shape")
    pred, target = pred.float(), target.float()
    cosine = F.cosine_similarity(pred, target, dim=-3, eps=EPS)  # (…, H, W)
    mse = (minmax_normalise(pred) - minmax_normalise(target)).square().mean(dim=-3)  # (…, H, W)
    return (1.0 - cosine) + mse


def feature_loss(pred: Tensor, target: Tensor) -> Tensor:
    """Mean feature distance over all pixels (a scalar): the crop objective's loss."""
    return feature_distance(pred, target).mean()


def self_consistency_loss(out: Tensor, lr: Tensor) -> Tensor:
    """The output area-downsampled to the LR grid against the LR input.

    Args:
        out: `(N, C, H, W)` upsampled features; lr: `(N, C, h, w)` the input features (H, W ≥ h, w).
    """
    pooled = F.interpolate(out.float(), size=tuple(lr.shape[-2:]), mode="area")  # (N, C, h, w)
    return feature_loss(pooled, lr)


def consistency_loss(out_augmented: Tensor, out_clean: Tensor) -> Tensor:
    """Output with photometrically augmented guidance against the output with clean guidance.

    The clean output is the teacher (no gradient through it): `(N, C, H, W)` ×2 → scalar.
    """
    return feature_loss(out_augmented, out_clean.detach())


def non_occluded(flow_fw: Tensor, flow_bw: Tensor, *, alpha: float = OCCLUSION_ALPHA, beta: float = OCCLUSION_BETA) -> Tensor:
    """Forward–backward consistency mask.

    Args:
        flow_fw: `(N, 2, H, W)` flow t→t−1 (pixels of this grid); flow_bw: `(N, 2, H, W)` flow t−1→t.
    Returns:
        `(N, 1, H, W)` float: 1 where the pixel of t is visible in t−1 (consistent and inside), else 0.
    """
    bw_at = flow_warp(flow_bw, flow_fw, padding_mode="border")  # f_bw(p + f_fw(p))
    error = (flow_fw + bw_at).square().sum(dim=1)  # (N, H, W)
    bound = alpha * (flow_fw.square().sum(dim=1) + bw_at.square().sum(dim=1)) + beta
    h, w = flow_fw.shape[-2:]
    position = base_grid(h, w, like=flow_fw) + flow_fw  # (N, 2, H, W), (x, y)
    inside = (position[:, 0] >= -0.5) & (position[:, 0] <= w - 0.5) & (position[:, 1] >= -0.5) & (position[:, 1] <= h - 0.5)
    return ((error < bound) & inside).unsqueeze(1).to(flow_fw.dtype)


def temporal_loss(out: Tensor, flows_to_prev: Tensor, visible: Tensor) -> Tensor:
    """Masked mean feature distance between `y_t` and `warp(y_{t−1}, f_{t→t−1})`.

    Args:
        out: `(B, T, C, H, W)` output clip, T ≥ 2.
        flows_to_prev: `(B, T−1, 2, H, W)` flows t→t−1 for t = 1 … T−1 at the output grid.
        visible: `(B, T−1, 1, H, W)` the `non_occluded` mask of those flows.
    Returns:
        scalar; 0 when no pixel is visible.
    """
    if out.shape[1] < 2:
        raise ValueError(f"the temporal term needs T >= 2 frames, got out {tuple(out.shape)}")
    warped = flow_warp(out[:, :-1].float(), flows_to_prev.float(), padding_mode="border")  # (B, T−1, C, H, W)
    distance = feature_distance(out[:, 1:], warped)  # (B, T−1, H, W)
    mask = visible[:, :, 0].float()  # (B, T−1, H, W)
    return (distance * mask).sum() / mask.sum().clamp(min=1.0)


__all__ = [
    "consistency_loss",
    "feature_distance",
    "feature_loss",
    "minmax_normalise",
    "non_occluded",
    "self_consistency_loss",
    "temporal_loss",
]
