"""The luma channel Y that super-resolution papers measure on (ITU-R BT.601, MATLAB `rgb2ycbcr`).

On RGB in [0, 1]: `Y = 16/255 + (65.481·R + 128.553·G + 24.966·B) / 255`, so Y lies in [16/255, 235/255].
"""

from __future__ import annotations

import torch
from torch import Tensor

BT601_WEIGHTS = (65.481, 128.553, 24.966)
BT601_OFFSET = 16.0


def rgb_to_y(rgb: Tensor) -> Tensor:
    """BT.601 luma of `(..., 3, H, W)` RGB in [0, 1] → `(..., 1, H, W)` in [16/255, 235/255]."""
    if rgb.dim() < 3 or rgb.shape[-3] != 3:
        raise ValueError(f"rgb must have shape (..., 3, H, W), got {tuple(rgb.shape)}")
    weights = torch.tensor(BT601_WEIGHTS, dtype=rgb.dtype, device=rgb.device).view(3, 1, 1)
    return ((rgb * weights).sum(dim=-3, keepdim=True) + BT601_OFFSET) / 255.0
