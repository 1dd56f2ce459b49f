"""Per-frame degradations: one frame of a clip blurred, noisy or occluded (DESIGN.md §5.5, "Training for it").

A clip whose frame t is degraded in both the backbone's input and the guidance, while the target stays the
clean frame's, teaches the network to take from the neighbouring frames what frame t lacks. The corrupted
frame benchmark (`benchmarks/bench_corrupted_frame.py`) applies the same operations to held-out clips.

- "blur": a Gaussian blur (σ in pixels of the frame);
- "noise": additive Gaussian noise, clamped to [0, 1];
- "box": a grey (0.5) rectangle over part of the frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

KINDS = ("blur", "noise", "box")


def gaussian_blur(images: Tensor, sigma: float) -> Tensor:
    """`(N, 3, H, W)` blurred by a separable Gaussian of standard deviation `sigma` pixels (reflect padding)."""
    if sigma <= 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    radius = max(1, int(round(3 * sigma)))
    radius = min(radius, images.shape[-1] - 1, images.shape[-2] - 1)
    x = torch.arange(-radius, radius + 1, dtype=images.dtype, device=images.device)
    kernel = torch.exp(-0.5 * (x / sigma) ** 2)
    kernel = kernel / kernel.sum()
    c = images.shape[1]
    out = F.pad(images, (radius, radius, 0, 0), mode="reflect")
    out = F.conv2d(out, kernel.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    out = F.pad(out, (0, 0, radius, radius), mode="reflect")
    return F.conv2d(out, kernel.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def grey_box(images: Tensor, box: tuple[int, int, int, int], value: float = 0.5) -> Tensor:
    """`(N, 3, H, W)` with the pixels `[top, bottom) × [left, right)` set to `value`."""
    top, bottom, left, right = box
    out = images.clone()
    out[..., top:bottom, left:right] = value
    return out


@dataclass(frozen=True)
class Degradation:
    """One drawn degradation: its kind, the frame per clip, and its strength or box (in frame pixels)."""

    kind: str
    frames: Tensor  # (B,) int64, the degraded frame of each clip
    sigma: float = 0.0  # blur
    std: float = 0.0  # noise
    box: tuple[int, int, int, int] = (0, 0, 0, 0)  # (top, bottom, left, right)

    def apply(self, images: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """The degraded copy of `(N, 3, H, W)` images (every image given is degraded)."""
        if self.kind == "blur":
            return gaussian_blur(images, self.sigma)
        if self.kind == "noise":
            noise = torch.randn(images.shape, generator=generator).to(images)
            return (images + self.std * noise).clamp(0.0, 1.0)
        return grey_box(images, self.box)


def draw_degradation(
    generator: torch.Generator,
    clips: int,
    frames: int,
    size: tuple[int, int],
    *,
    kinds: tuple[str, ...] = KINDS,
    sigma: tuple[float, float] = (1.5, 4.0),
    std: tuple[float, float] = (0.1, 0.25),
    box_side: tuple[float, float] = (0.3, 0.6),
) -> Degradation:
    """A random degradation of one frame per clip (the same kind and strength for the batch)."""
    unknown = [k for k in kinds if k not in KINDS]
    if not kinds or unknown:
        raise ValueError(f"kinds must be a non-empty subset of {KINDS}, got {list(kinds)}")

    def uniform(low: float, high: float) -> float:
        return low + (high - low) * float(torch.rand((), generator=generator))

    kind = kinds[int(torch.randint(0, len(kinds), (), generator=generator))]
    which = torch.randint(0, frames, (clips,), generator=generator)
    h, w = size
    bh, bw = max(1, int(uniform(*box_side) * h)), max(1, int(uniform(*box_side) * w))
    top = int(torch.randint(0, h - bh + 1, (), generator=generator))
    left = int(torch.randint(0, w - bw + 1, (), generator=generator))
    return Degradation(kind, which, sigma=uniform(*sigma), std=uniform(*std), box=(top, top + bh, left, left + bw))


def degrade_clips(frames: Tensor, degradation: Degradation, generator: torch.Generator | None = None) -> Tensor:
    """`(B, T, 3, H, W)` clips with frame `degradation.frames[b]` of clip b degraded (a new tensor)."""
    out = frames.clone()
    index = torch.arange(frames.shape[0])
    out[index, degradation.frames] = degradation.apply(frames[index, degradation.frames], generator)
    return out
