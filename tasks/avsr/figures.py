"""Figures of an evaluation: PSNR against scale, and side-by-side crops (bicubic | model | ground truth).

Both return a matplotlib `Figure` (Agg backend, no display needed); callers save or log it and close it.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import torch
from torch import Tensor


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def psnr_vs_scale(curves: Mapping[str, Mapping[str, float]], *, title: str = "PSNR against scale"):
    """One line per method over the scales.

    Args:
        curves: `{method: {scale label: PSNR dB}}`, e.g. `{"bicubic": {"x2": 31.2, "x4": 26.0}, ...}`.
            Symmetric labels ("x4") are placed at their scale; asymmetric ones ("x2.5x3.5") at the geometric
            mean of a and b.
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 3.8), dpi=100)
    for method, values in curves.items():
        points = sorted((_scale_position(label), value, label) for label, value in values.items())
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=method)
    ax.set_xlabel("scale (geometric mean of a, b)")
    ax.set_ylabel("PSNR (dB)")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return fig


def _scale_position(label: str) -> float:
    values = [float(v) for v in label.lstrip("x").split("x")]
    return float(np.sqrt(values[0] * values[-1]))


def textured_centre(image: Tensor, crop: int) -> tuple[int, int]:
    """`(y, x)` of the `crop × crop` window of `image` `(3, H, W)` with the most gradient energy (the window where
    methods can differ; chosen from this one image alone, not from any method's output). Ties: the first window."""
    grey = image.detach().float().mean(0, keepdim=True)[None]  # (1, 1, H, W)
    energy = torch.zeros_like(grey)
    energy[..., :, 1:] += (grey[..., :, 1:] - grey[..., :, :-1]).abs()
    energy[..., 1:, :] += (grey[..., 1:, :] - grey[..., :-1, :]).abs()
    height, width = grey.shape[-2:]
    ch, cw = min(crop, height), min(crop, width)
    sums = torch.nn.functional.avg_pool2d(energy, (ch, cw), stride=1)[0, 0]  # (H - ch + 1, W - cw + 1)
    top, left = divmod(int(sums.flatten().argmax()), sums.shape[1])
    return top + ch // 2, left + cw // 2


def side_by_side(
    images: Sequence[Tensor], titles: Sequence[str], *, crop: int = 128, centre: tuple[int, int] | None = None
):
    """The same `crop × crop` window of several `(3, H, W)` images next to each other.

    Args:
        images: e.g. `[bicubic, model, ground_truth]`, all `(3, H, W)` in [0, 1].
        titles: one per image.
        centre: `(y, x)` of the window (default: the image centre).
    """
    plt = _pyplot()
    height, width = images[0].shape[-2:]
    ch, cw = min(crop, height), min(crop, width)
    cy, cx = centre if centre is not None else (height // 2, width // 2)
    top, left = min(max(cy - ch // 2, 0), height - ch), min(max(cx - cw // 2, 0), width - cw)
    fig, axes = plt.subplots(1, len(images), figsize=(3.2 * len(images), 3.5), dpi=100)
    for ax, image, title in zip(np.atleast_1d(axes), images, titles):
        window = image[:, top : top + ch, left : left + cw].detach().float().clamp(0, 1).cpu()
        ax.imshow(window.permute(1, 2, 0).numpy(), interpolation="nearest")
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    fig.tight_layout()
    return fig
