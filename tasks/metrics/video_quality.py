"""Video quality as the AVSR papers report it: per-frame PSNR / SSIM averaged over all frames.

`QualitySums` keeps float64 sums of per-frame values and the frame count for each key (e.g. a scale), so
partial results from several clips, batches or processes add up exactly to the average over all frames.
Reported metrics: RGB with a border crop (the BasicAVSR authors, 4 pixels) and Y with no crop (other AVSR
papers).
"""

from __future__ import annotations

from typing import Iterable

import torch
from torch import Tensor

from videoanyup.tasks.metrics.psnr import psnr
from videoanyup.tasks.metrics.ssim import ssim

METRICS = ("psnr", "ssim", "psnr_y", "ssim_y")


def quantize(x: Tensor) -> Tensor:
    """Clamp to [0, 1] and round to 8 bits, as saving the output as images does: `(...)` → `(...)`."""
    return torch.round(x.clamp(0.0, 1.0) * 255.0) / 255.0


def frame_quality(pred: Tensor, target: Tensor, *, crop_border: int) -> dict[str, Tensor]:
    """Per-frame metrics of `(T, 3, H, W)` frames: each entry `(T,)` float64."""
    return {
        "psnr": psnr(pred, target, crop_border=crop_border),
        "ssim": ssim(pred, target, crop_border=crop_border),
        "psnr_y": psnr(pred, target, crop_border=0, y_channel=True),
        "ssim_y": ssim(pred, target, crop_border=0, y_channel=True),
    }


class QualitySums:
    """Sums of per-frame PSNR / SSIM (RGB with `crop_border`, Y with crop 0) and frame counts per key."""

    def __init__(self, keys: Iterable[str], *, crop_border: int = 4) -> None:
        self.keys = list(keys)
        self.crop_border = crop_border
        self.sums = torch.zeros(len(self.keys), len(METRICS) + 1, dtype=torch.float64)  # (K, metrics + count)

    def update(self, key: str, pred: Tensor, target: Tensor) -> dict[str, float]:
        """Add the frames of one clip `(T, 3, H, W)` under `key`; returns this clip's frame averages."""
        if key not in self.keys:
            raise ValueError(f"key={key!r} is not one of {self.keys}")
        values = frame_quality(pred.detach().cpu(), target.detach().cpu(), crop_border=self.crop_border)
        row = self.keys.index(key)
        for j, name in enumerate(METRICS):
            self.sums[row, j] += values[name].sum()
        self.sums[row, -1] += pred.shape[0]
        return {name: float(values[name].mean()) for name in METRICS}

    def load(self, sums: Tensor) -> None:
        """Replace the sums, e.g. by their all-reduced total over processes: `(K, len(METRICS) + 1)`."""
        if sums.shape != self.sums.shape:
            raise ValueError(f"sums must have shape {tuple(self.sums.shape)}, got {tuple(sums.shape)}")
        self.sums = sums.detach().to("cpu", torch.float64).clone()

    def means(self) -> dict[str, dict[str, float]]:
        """`{key: {metric: average over all frames, "frames": count}}` for keys that saw frames."""
        result = {}
        for row, key in enumerate(self.keys):
            count = float(self.sums[row, -1])
            if count > 0:
                result[key] = {name: float(self.sums[row, j] / count) for j, name in enumerate(METRICS)}
                result[key]["frames"] = int(count)
        return result
