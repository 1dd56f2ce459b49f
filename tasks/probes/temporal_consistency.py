"""Temporal consistency of upsampled features and probe predictions, measured with a flow the models do
not use (DESIGN.md §5.7; Lai et al. 2018).

For each consecutive pair (t, t+1) of the input frames at the output resolution: OpenCV's DIS optical flow
(medium preset, on grey levels) forward t→t+1 and backward t+1→t; the map at t+1 is warped back onto frame
t (`flow_warp` with the forward flow); a pixel counts when it passes the forward–backward check
(|f + b(p + f)|² ≤ 0.01 (|f|² + |b(p + f)|²) + 0.5, Sundaram et al. 2010) and its target lies inside
the frame. The pair's error is the mean over the counted pixels of

* features: 1 − cos(x_t(p), warp(x_{t+1})(p)) (scale-free, so backbones of any C and norm compare);
* predictions: "l1", the mean absolute difference over channels (class probabilities: half of it is the
  total variation distance; depth: the difference of log-depths).

`temporal_error` returns the per-pair errors; the probe reports their mean as a ratio to the bilinear
upsampler's on the same pairs (1 for bilinear itself, below 1 is steadier).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from videoanyup.functional.warp import base_grid, flow_warp

FB_ALPHA = 0.01
FB_BETA = 0.5


def dis_flow(ref: Tensor, supp: Tensor) -> Tensor:
    """OpenCV DIS flow (medium preset) from `ref` to `supp`, `(3, H, W)` in [0, 1] → `(2, H, W)` (x, y)."""
    import cv2

    def grey(x: Tensor) -> np.ndarray:
        rgb = (x.detach().float().clamp(0, 1) * 255).round().byte().permute(1, 2, 0).contiguous().cpu().numpy()
        return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)

    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    flow = dis.calc(grey(ref), grey(supp), None)  # (H, W, 2): ref(p) ≈ supp(p + flow(p))
    return torch.from_numpy(flow).permute(2, 0, 1).contiguous()


def valid_mask(forward: Tensor, backward: Tensor, *, alpha: float = FB_ALPHA, beta: float = FB_BETA) -> Tensor:
    """Non-occluded pixels of frame t: `(H, W)` bool from flows t→t+1 and t+1→t, each `(2, H, W)`."""
    back = flow_warp(backward[None], forward[None], padding_mode="border")[0]  # b(p + f(p))
    mismatch = (forward + back).pow(2).sum(0)
    bound = alpha * (forward.pow(2).sum(0) + back.pow(2).sum(0)) + beta
    target = base_grid(*forward.shape[-2:], like=forward) + forward  # (2, H, W) (x, y)
    height, width = forward.shape[-2:]
    inside = (target[0] >= 0) & (target[0] <= width - 1) & (target[1] >= 0) & (target[1] <= height - 1)
    return (mismatch <= bound) & inside


def clip_flows(frames: Tensor) -> list[tuple[Tensor, Tensor]]:
    """Per consecutive pair of `(T, 3, H, W)` frames: (forward flow, non-occluded mask) at (H, W)."""
    pairs = []
    for t in range(frames.shape[0] - 1):
        forward = dis_flow(frames[t], frames[t + 1])
        backward = dis_flow(frames[t + 1], frames[t])
        pairs.append((forward, valid_mask(forward, backward)))
    return pairs


def pair_error(x0: Tensor, x1: Tensor, forward: Tensor, valid: Tensor, distance: str = "cosine") -> float:
    """Error between `x0` `(C, H, W)` and `x1` warped back by `forward` over `valid` (module docstring)."""
    warped = flow_warp(x1[None].float(), forward[None].to(x1.device), padding_mode="border")[0]
    if distance == "cosine":
        error = 1 - F.cosine_similarity(x0.float(), warped, dim=0, eps=1e-8)  # (H, W)
    elif distance == "l1":
        error = (x0.float() - warped).abs().mean(0)
    else:
        raise ValueError(f"distance must be 'cosine' or 'l1', got {distance!r}")
    valid = valid.to(error.device)
    if not bool(valid.any()):
        return float("nan")
    return float(error[valid].mean())


def temporal_error(maps: Tensor, flows: list[tuple[Tensor, Tensor]], distance: str = "cosine") -> list[float]:
    """Per-pair errors of `(T, C, H, W)` maps given `clip_flows` of the same frames."""
    if len(flows) != maps.shape[0] - 1:
        raise ValueError(f"flows must hold T − 1 = {maps.shape[0] - 1} pairs, got {len(flows)}")
    return [pair_error(maps[t], maps[t + 1], *flows[t], distance=distance) for t in range(len(flows))]


def ratio(errors: list[float], reference: list[float]) -> float:
    """mean(errors) / mean(reference) over pairs where both are defined (nan when the reference is 0)."""
    a, b = np.asarray(errors, dtype=float), np.asarray(reference, dtype=float)
    keep = np.isfinite(a) & np.isfinite(b)
    if not keep.any() or b[keep].mean() == 0:
        return float("nan")
    return float(a[keep].mean() / b[keep].mean())
