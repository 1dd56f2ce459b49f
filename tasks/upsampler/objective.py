"""The multi-zoom crop objective of VideoAnyUp training (DESIGN.md §5.6).

A backbone with patch p sees a square image of S pixels resized to `(g·p)²`, giving LR features on a
g × g grid. For a zoom z the upsampler is asked for the `z·g` grid. A window of g × g cells of that output,
cell-aligned at `(top, left)` ∈ [0, z·g − g]², covers the image region

    rows [top · S/(z·g), (top + g) · S/(z·g)),  columns likewise,

a 1/z part of each side. The target is the backbone run natively on that region resized to `(g·p)²`,
which gives g × g features: what the backbone "would see" if its patches were z times smaller. The loss
is `losses.feature_loss(output window, target)`. AnyUp trains z = 2 only; z ∈ {2, 4, 8} teaches the
scale-conditioned prior the large factors it is used at.

Regions are resampled with `crop_resize`: an exact crop plus `F.interpolate` (bilinear, antialiased when
shrinking) when the box falls on whole pixels inside the image, bilinear sampling of the box otherwise
(border pixels repeated outside the image).

The network takes the g × g cells to tile the region they describe, as a ViT's patches do. A CNN level
centres its cells elsewhere (its `geometry`: ResNet's stride-16 cells sit 7.5 of the 16 pixels before the
tiling's centres). So that LR input and targets both tile their regions, every box is moved by that
offset (`cell_shift`, in cells) before it is cropped: the backbone then puts its cells where the objective
expects them. For a tiling backbone the shift is 0 and the boxes are unchanged.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from videoanyup.backbones.base import Backbone


def draw_windows(generator: torch.Generator, batch: int, grid: int, zoom: int) -> Tensor:
    """Random cell-aligned windows: `(batch, 2)` long `(top, left)` in [0, zoom·grid − grid]."""
    if zoom < 1 or grid < 1:
        raise ValueError(f"zoom={zoom} and grid={grid} must be >= 1")
    return torch.randint(0, zoom * grid - grid + 1, (batch, 2), generator=generator)


def window_boxes(windows: Tensor, *, grid: int, zoom: int, image_size: int) -> Tensor:
    """Image regions of output windows: `(B, 2)` cells → `(B, 4)` float64 `(top, left, bottom, right)` pixels."""
    cell = image_size / (zoom * grid)  # pixels per output cell
    start = windows.to(torch.float64) * cell  # (B, 2)
    return torch.cat([start, start + grid * cell], dim=1)


def take_windows(out: Tensor, windows: Tensor, grid: int) -> Tensor:
    """The g × g windows of an output: `(B, C, H, W)`, `(B, 2)` → `(B, C, g, g)`."""
    return torch.stack([out[i, :, int(t) : int(t) + grid, int(l) : int(l) + grid] for i, (t, l) in enumerate(windows.tolist())])


def crop_resize(images: Tensor, boxes: Tensor, size: int) -> Tensor:
    """Regions of images resized to `size²`.

    Args:
        images: `(B, 3, H, W)`; boxes: `(B, 4)` `(top, left, bottom, right)` in pixels (may be fractional).
    Returns:
        `(B, 3, size, size)` float32.
    """
    crops = []
    for image, box in zip(images.float(), boxes.tolist()):
        top, left, bottom, right = box
        height, width = image.shape[-2:]
        inside = top >= 0 and left >= 0 and bottom <= height and right <= width
        if inside and all(abs(v - round(v)) < 1e-9 for v in box):  # whole pixels: crop, then resize like the backbones do
            crop = image[None, :, round(top) : round(bottom), round(left) : round(right)]  # (1, 3, hc, wc)
            if crop.shape[-2:] != (size, size):
                shrink = crop.shape[-2] > size or crop.shape[-1] > size
                crop = F.interpolate(crop, size=(size, size), mode="bilinear", align_corners=False, antialias=shrink)
            crops.append(crop)
            continue
        steps = (torch.arange(size, dtype=torch.float64) + 0.5) / size  # (size,) in (0, 1)
        ys = top + steps * (bottom - top)  # sample positions in pixel units (pixel i covers [i, i + 1))
        xs = left + steps * (right - left)
        grid_y, grid_x = torch.meshgrid(2 * ys / height - 1, 2 * xs / width - 1, indexing="ij")
        grid = torch.stack([grid_x, grid_y], dim=-1)[None].to(image)  # (1, size, size, 2)
        crops.append(F.grid_sample(image[None], grid, mode="bilinear", padding_mode="border", align_corners=False))
    return torch.cat(crops)  # (B, 3, size, size)


def input_side(backbone: Backbone, grid: int) -> int:
    """The backbone's input side `g·p` for a grid of g cells; ValueError unless it keeps g cells."""
    size = grid * backbone.stride
    if size % backbone.size_multiple:
        raise ValueError(
            f"grid {grid} needs {size} px of input, not a multiple of backbone {backbone.name!r}'s "
            f"{backbone.size_multiple}: use grids that are multiples of {backbone.size_multiple // math.gcd(backbone.stride, backbone.size_multiple)}"
        )
    return size


def cell_shift(backbone: Backbone, grid: int) -> tuple[float, float]:
    """Where the backbone's cells sit against a tiling's centres, in cells (y, x): `(offset − p/2) / p` on its
    `(g·p)²` input (0 for a ViT, −15/32 for ResNet's stride-16 level)."""
    size = input_side(backbone, grid)
    geometry = backbone.geometry(size, size)  # on its own input: no resize
    return tuple((o - s / 2) / s for o, s in zip(geometry.offset, geometry.stride))


def shift_boxes(boxes: Tensor, shift: tuple[float, float], grid: int) -> Tensor:
    """Boxes `(B, 4)` (top, left, bottom, right) moved by −shift cells of g per side, so that cells a backbone
    centres `shift` cells off the tiling land on the tiling of the unmoved box."""
    if shift == (0.0, 0.0):
        return boxes
    cell = torch.stack([boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]], dim=1) / grid  # (B, 2) pixels
    move = -cell * boxes.new_tensor(shift)  # (B, 2)
    return boxes + torch.cat([move, move], dim=1)


def lr_features(backbone: Backbone, images: Tensor, grid: int) -> Tensor:
    """Backbone features of whole images resized to `(grid·p)²`: `(B, 3, S, S)` → `(B, C, g, g)`."""
    size = input_side(backbone, grid)
    boxes = images.new_tensor([[0.0, 0.0, images.shape[-2], images.shape[-1]]], dtype=torch.float64).expand(images.shape[0], 4)
    boxes = shift_boxes(boxes, cell_shift(backbone, grid), grid)
    return backbone.extract(crop_resize(images, boxes, size).clamp(0, 1))[:, 0]  # (B, C, g, g)


def crop_targets(backbone: Backbone, images: Tensor, windows: Tensor, *, grid: int, zoom: int) -> Tensor:
    """Targets of the windows: the backbone on each window's image region, `(B, 3, S, S)` → `(B, C, g, g)`."""
    if images.shape[-2] != images.shape[-1]:
        raise ValueError(f"images must be square (B, 3, S, S), got {tuple(images.shape)}")
    boxes = window_boxes(windows, grid=grid, zoom=zoom, image_size=int(images.shape[-1]))
    boxes = shift_boxes(boxes, cell_shift(backbone, grid), grid)
    crops = crop_resize(images, boxes, input_side(backbone, grid)).clamp(0, 1)  # (B, 3, g·p, g·p)
    return backbone.extract(crops)[:, 0]  # (B, C, g, g)


__all__ = [
    "cell_shift", "crop_resize", "crop_targets", "draw_windows", "input_side", "lr_features", "shift_boxes",
    "take_windows", "window_boxes",
]
