"""Structural similarity (Wang et al. 2004) as the super-resolution papers compute it.

11×11 Gaussian window with σ = 1.5, K1 = 0.01, K2 = 0.03, data range 1, statistics over the *valid* part of
the image only (MATLAB `filter2(..., 'valid')`, as in the reference code), the SSIM map averaged per
channel and the channels averaged (RGB) — or computed on the BT.601 luma.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from videoanyup.tasks.metrics.psnr import check_pair, prepare

WINDOW = 11
SIGMA = 1.5
K1, K2 = 0.01, 0.03


def gaussian_window(size: int = WINDOW, sigma: float = SIGMA, *, dtype=torch.float64, device=None) -> Tensor:
    """Normalised 2-D Gaussian `(size, size)` summing to 1."""
    coords = torch.arange(size, dtype=dtype, device=device) - (size - 1) / 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    g = g / g.sum()
    return g[:, None] * g[None, :]


def ssim(pred: Tensor, target: Tensor, *, crop_border: int = 0, y_channel: bool = False) -> Tensor:
    """SSIM of each image.

    Args:
        pred, target: `(..., 3, H, W)` RGB in [0, 1]; after cropping H, W must be >= 11.
        crop_border: pixels removed from each side before measuring.
        y_channel: measure on the BT.601 luma instead of averaging over R, G, B.
    Returns:
        `(...)` float64 SSIM per image (1 for identical images).
    """
    check_pair(pred, target, crop_border)
    x = prepare(pred, crop_border=crop_border, y_channel=y_channel)
    y = prepare(target, crop_border=crop_border, y_channel=y_channel)
    *lead, c, h, w = x.shape
    if h < WINDOW or w < WINDOW:
        raise ValueError(f"ssim needs images of at least {WINDOW}×{WINDOW} after cropping, got {h}×{w}")
    x = x.reshape(-1, 1, h, w)  # (N·C, 1, h, w)
    y = y.reshape(-1, 1, h, w)
    window = gaussian_window(device=x.device)[None, None]  # (1, 1, 11, 11)

    def blur(z: Tensor) -> Tensor:
        return F.conv2d(z, window)  # valid: (N·C, 1, h - 10, w - 10)

    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x**2
    var_y = blur(y * y) - mu_y**2
    cov = blur(x * y) - mu_x * mu_y
    c1, c2 = K1**2, K2**2
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    per_channel = ssim_map.mean(dim=(-3, -2, -1)).reshape(*lead, c)  # (..., C)
    return per_channel.mean(dim=-1)
