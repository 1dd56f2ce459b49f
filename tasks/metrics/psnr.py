"""Peak signal-to-noise ratio per image: `10·log10(1 / MSE)` on values in [0, 1].

The papers average PSNR per frame and then over frames (never the PSNR of the pooled MSE); the functions
here return one value per image so callers can average the way the protocol asks.
"""

from __future__ import annotations

import torch
from torch import Tensor

from videoanyup.tasks.metrics.luma import rgb_to_y


def check_pair(pred: Tensor, target: Tensor, crop_border: int) -> None:
    """Same shape `(..., 3, H, W)`, a non-negative border that leaves pixels."""
    if pred.shape != target.shape:
        raise ValueError(f"pred and target must have the same shape, got {tuple(pred.shape)} and {tuple(target.shape)}")
    if pred.dim() < 3 or pred.shape[-3] != 3:
        raise ValueError(f"pred and target must have shape (..., 3, H, W), got {tuple(pred.shape)}")
    if crop_border < 0 or 2 * crop_border >= min(pred.shape[-2:]):
        raise ValueError(f"crop_border={crop_border} must be >= 0 and leave pixels of a {tuple(pred.shape[-2:])} image")


def prepare(x: Tensor, *, crop_border: int, y_channel: bool) -> Tensor:
    """Float64, optionally Y, border-cropped: `(..., 3, H, W)` → `(..., C, H - 2c, W - 2c)`, C = 1 or 3."""
    x = x.to(torch.float64)
    if y_channel:
        x = rgb_to_y(x)
    if crop_border > 0:
        x = x[..., crop_border:-crop_border, crop_border:-crop_border]
    return x


def psnr(pred: Tensor, target: Tensor, *, crop_border: int = 0, y_channel: bool = False) -> Tensor:
    """PSNR in dB of each image.

    Args:
        pred, target: `(..., 3, H, W)` RGB in [0, 1].
        crop_border: pixels removed from each side before measuring.
        y_channel: measure on the BT.601 luma instead of the three RGB channels.
    Returns:
        `(...)` float64 PSNR per image; `inf` where the images are equal.
    """
    check_pair(pred, target, crop_border)
    diff = prepare(pred, crop_border=crop_border, y_channel=y_channel) - prepare(
        target, crop_border=crop_border, y_channel=y_channel
    )
    mse = diff.square().mean(dim=(-3, -2, -1))  # (...)
    return 10.0 * torch.log10(1.0 / mse)
