"""Degradations of one frame of a clip: what a neighbour can restore (DESIGN.md §5.5, "One behaviour, learned").

A clip whose frame t is degraded in both the backbone's input and the guidance, while the target stays the
clean frame's, teaches the network to take from the neighbouring frames what frame t lost. Scene events, where
frame t's own content is the truth, are the other half of that lesson (`events.py`); `alterations.py` draws
one of either per clip step. The corrupted-frame benchmark (`benchmarks/bench_corrupted_frame.py`) applies the
Gaussian blur and the grey box to held-out clips.

- "blur": a Gaussian blur (σ in pixels of the frame);
- "motion_blur": a line of `length` pixels at a random angle (camera shake);
- "defocus": a disk of `radius` pixels (out of focus);
- "noise": additive Gaussian noise, clamped to [0, 1];
- "box": a grey (0.5) rectangle over part of the frame;
- "occluder": a rectangle of a random colour with a smooth random texture (something passing in front);
- "dropped": the whole frame grey (a dropped frame).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

KINDS = ("blur", "motion_blur", "defocus", "noise", "box", "occluder", "dropped")


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


def kernel_blur(images: Tensor, kernel: Tensor) -> Tensor:
    """`(N, 3, H, W)` convolved with a normalised `(k, k)` kernel (k odd; reflect padding)."""
    k = kernel.shape[-1]
    r = min(k // 2, images.shape[-1] - 1, images.shape[-2] - 1)
    kernel = kernel[k // 2 - r : k // 2 + r + 1, k // 2 - r : k // 2 + r + 1]
    kernel = (kernel / kernel.sum()).to(images)
    c = images.shape[1]
    out = F.pad(images, (r, r, r, r), mode="reflect")
    return F.conv2d(out, kernel.expand(c, 1, -1, -1), groups=c)


def line_kernel(length: float, angle: float) -> Tensor:
    """`(k, k)` kernel of a line of `length` pixels through the centre at `angle` radians (k odd)."""
    r = max(1, int(math.ceil(length / 2)))
    ys, xs = torch.meshgrid(torch.arange(-r, r + 1.0), torch.arange(-r, r + 1.0), indexing="ij")
    along = xs * math.cos(angle) + ys * math.sin(angle)
    across = -xs * math.sin(angle) + ys * math.cos(angle)
    return ((across.abs() <= 0.5) & (along.abs() <= length / 2)).float() + (xs == 0).float() * (ys == 0).float() * 1e-3


def disk_kernel(radius: float) -> Tensor:
    """`(k, k)` kernel of a disk of `radius` pixels (k odd)."""
    r = max(1, int(math.ceil(radius)))
    ys, xs = torch.meshgrid(torch.arange(-r, r + 1.0), torch.arange(-r, r + 1.0), indexing="ij")
    return ((xs**2 + ys**2) <= radius**2 + 0.25).float()


def grey_box(images: Tensor, box: tuple[int, int, int, int], value: float = 0.5) -> Tensor:
    """`(N, 3, H, W)` with the pixels `[top, bottom) × [left, right)` set to `value`."""
    top, bottom, left, right = box
    out = images.clone()
    out[..., top:bottom, left:right] = value
    return out


def occluder(images: Tensor, box: tuple[int, int, int, int], colour: Tensor, texture: Tensor) -> Tensor:
    """`(N, 3, H, W)` with the box filled with `colour` `(3,)` modulated by a smooth `texture` `(1, th, tw)`
    (resized to the box)."""
    top, bottom, left, right = box
    out = images.clone()
    pattern = F.interpolate(texture[None], size=(bottom - top, right - left), mode="bilinear", align_corners=False)[0]
    out[..., top:bottom, left:right] = (colour.view(3, 1, 1).to(images) * (0.7 + 0.6 * pattern.to(images))).clamp(0, 1)
    return out


@dataclass(frozen=True)
class Degradation:
    """One drawn degradation: its kind, the frame per clip, and its strength or box (in frame pixels)."""

    kind: str
    frames: Tensor  # (B,) int64, the degraded frame of each clip
    sigma: float = 0.0  # blur
    std: float = 0.0  # noise
    box: tuple[int, int, int, int] = (0, 0, 0, 0)  # (top, bottom, left, right)
    length: float = 0.0  # motion blur
    angle: float = 0.0  # motion blur, radians
    radius: float = 0.0  # defocus
    colour: tuple[float, float, float] = (0.5, 0.5, 0.5)  # occluder

    def apply(self, images: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """The degraded copy of `(N, 3, H, W)` images (every image given is degraded)."""
        if self.kind == "blur":
            return gaussian_blur(images, self.sigma)
        if self.kind == "motion_blur":
            return kernel_blur(images, line_kernel(self.length, self.angle))
        if self.kind == "defocus":
            return kernel_blur(images, disk_kernel(self.radius))
        if self.kind == "noise":
            noise = torch.randn(images.shape, generator=generator).to(images)
            return (images + self.std * noise).clamp(0.0, 1.0)
        if self.kind == "occluder":
            texture = gaussian_blur(torch.rand(1, 1, 16, 16, generator=generator), 1.5)[0]
            return occluder(images, self.box, torch.tensor(self.colour), texture)
        if self.kind == "dropped":
            return torch.full_like(images, 0.5)
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
    """A random degradation of one frame per clip (the same kind and strength for the batch). Motion blur and
    defocus take their length and radius from the `sigma` range (× 3 and × 1.5: about the same loss of detail)."""
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
    s = uniform(*sigma)
    extra = {}
    if kind in ("motion_blur", "defocus", "occluder"):  # drawn only for the new kinds: the older draws stay as they were
        extra = dict(
            length=3.0 * s, angle=uniform(0.0, math.pi), radius=1.5 * s,
            colour=tuple(float(v) for v in torch.rand(3, generator=generator)),
        )
    return Degradation(kind, which, sigma=s, std=uniform(*std), box=(top, top + bh, left, left + bw), **extra)


def degrade_clips(frames: Tensor, degradation: Degradation, generator: torch.Generator | None = None) -> Tensor:
    """`(B, T, 3, H, W)` clips with frame `degradation.frames[b]` of clip b degraded (a new tensor)."""
    out = frames.clone()
    index = torch.arange(frames.shape[0])
    out[index, degradation.frames] = degradation.apply(frames[index, degradation.frames], generator)
    return out
