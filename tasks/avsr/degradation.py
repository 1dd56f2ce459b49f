"""The training and evaluation degradation of DESIGN.md §4.7: HR crops → bicubic LR, and scale labels.

Training: an HR crop of `(round(p·a), round(p·b))` pixels is downsampled to a `p × p` LR patch with torch
bicubic (antialias optional) and the loss sees only a random HR sub-crop, so the cost does not grow with
the scale. Evaluation: LR = bicubic to `(floor(H/a), floor(W/b))`, output asked at the exact `(H, W)`.
"""

from __future__ import annotations

import math
from typing import Sequence

from torch import Tensor

from videoanyup.functional import downsample
from videoanyup.tasks.metrics import quantize


def degrade(hr: Tensor, size: Sequence[int], *, antialias: bool = False, quantize_8bit: bool = False) -> Tensor:
    """Bicubic LR of `(..., 3, H, W)` HR frames: `(..., 3, h, w)` = `size`, clamped to [0, 1].

    `quantize_8bit` rounds to 8-bit levels, as LR frames stored as images are.
    """
    lr = downsample(hr, size, antialias=antialias).clamp_(0.0, 1.0)
    return quantize(lr) if quantize_8bit else lr


def parse_scale(text: str | float | int) -> tuple[float, float]:
    """`"4"` → (4, 4); `"2.5x3.5"` → (2.5, 3.5); numbers as they are. Raises ValueError naming the text."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        values = [float(text)] * 2
    else:
        parts = str(text).lower().replace("×", "x").split("x")
        try:
            values = [float(p) for p in parts]
        except ValueError:
            values = []
        values = values * 2 if len(values) == 1 else values
    if len(values) != 2 or not all(math.isfinite(v) and v > 0 for v in values):
        raise ValueError(f"scale {text!r} must be a positive number like 4 or 2.5, or a pair like 2.5x3.5")
    return values[0], values[1]


def scale_label(scale: tuple[float, float]) -> str:
    """`(4, 4)` → "x4"; `(2.5, 3.5)` → "x2.5x3.5"."""
    a, b = (f"{v:g}" for v in scale)
    return f"x{a}" if a == b else f"x{a}x{b}"


def eval_lr_size(height: int, width: int, scale: tuple[float, float]) -> tuple[int, int]:
    """The evaluation protocol's LR size `(floor(H/a), floor(W/b))`; ValueError if it is empty."""
    h, w = math.floor(height / scale[0] + 1e-9), math.floor(width / scale[1] + 1e-9)  # 720 / 2.4 is 300
    if h < 1 or w < 1:
        raise ValueError(f"scale {scale} is too large for {height}×{width} frames (LR would be {h}×{w})")
    return h, w


def bicubic_upscale(lr: Tensor, size: Sequence[int]) -> Tensor:
    """The bicubic baseline: `(..., 3, h, w)` → `(..., 3, H, W)` = `size`, clamped to [0, 1]."""
    import torch.nn.functional as F

    *lead, c, h, w = lr.shape
    out = F.interpolate(lr.reshape(-1, c, h, w), size=tuple(size), mode="bicubic", align_corners=False)
    return out.reshape(*lead, c, *out.shape[-2:]).clamp_(0.0, 1.0)
