"""Sinusoidal encodings of continuous values (scale codes, sub-pixel phases, offsets)."""

from __future__ import annotations

import torch
from torch import Tensor


def log_frequencies(count: int = 16, max_log2: float = 10.0) -> Tensor:
    """`2^linspace(0, max_log2, count) − 1`, in radians per unit (the hyper-network's encoder, DESIGN.md §4.5)."""
    return torch.pow(2.0, torch.linspace(0.0, max_log2, count, dtype=torch.float64)) - 1.0


def sinusoidal_encoding(values: Tensor, frequencies: Tensor) -> Tensor:
    """Encode each value with `sin(f·v)` and `cos(f·v)` for every frequency f.

    Args:
        values: `(..., D)`.
        frequencies: `(F,)`.
    Returns:
        `(..., D·2F)`, laid out value by value: `[sin(f·v_0), cos(f·v_0), sin(f·v_1), …]` grouped per value
        (so the encoding of value d occupies the slice `d·2F : (d + 1)·2F`).
    """
    angles = values[..., None] * frequencies.to(values)  # (..., D, F)
    encoded = torch.cat((torch.sin(angles), torch.cos(angles)), dim=-1)  # (..., D, 2F)
    return encoded.flatten(-2)  # (..., D·2F)
