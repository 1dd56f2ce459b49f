"""SPyNet's coarse-to-fine loop run outside the network, returning every level's flow (for a multi-scale loss).

The two finest levels cost about 95 % of SPyNet's compute. For training they can be run on a random window
only (`window` pixels square at full resolution, half that at the level below), while the coarse levels see
the whole crop: large motions are estimated with full context, and the fine levels, which only refine by a
pixel or so, train on a small patch. Inside the window every operation equals the network's own forward
(upsampling with `align_corners=True` and border-padded warping use the full frame's coordinates), so with
`window=None` the last level's flow is exactly `SPyNet()(ref, supp)` for crops that are multiples of 32.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from videoanyup.layers.spynet import IMAGENET_MEAN, IMAGENET_STD, LEVELS, SPyNet

WINDOWED_LEVELS = 2  # the finest levels that run on a window


@dataclass(frozen=True)
class LevelFlow:
    """Flow at one pyramid level, in that level's pixels: `flow` (N, 2, hl, wl) covering rows
    `top … top + hl − 1` and columns `left … left + wl − 1` of the level's grid; `stride` = 2^(LEVELS−1−level)."""

    flow: Tensor
    top: int
    left: int
    stride: int


def image_pyramid(x: Tensor) -> list[Tensor]:
    """ImageNet-normalised pyramid of `x` (N, 3, H, W), coarsest first: LEVELS entries of size H/32 … H."""
    mean = x.new_tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = x.new_tensor(IMAGENET_STD).view(1, 3, 1, 1)
    levels = [(x - mean) / std]
    for _ in range(LEVELS - 1):
        levels.append(F.avg_pool2d(levels[-1], kernel_size=2, stride=2, count_include_pad=False))
    return levels[::-1]


def _warp_window(supp: Tensor, flow: Tensor, top: int, left: int) -> Tensor:
    """Border-padded backward warp of the full `supp` (N, C, H, W) for the window of `flow` (N, 2, h, w) at (top, left)."""
    n, _, h, w = flow.shape
    full_h, full_w = supp.shape[-2:]
    ys = torch.arange(top, top + h, device=flow.device, dtype=flow.dtype)
    xs = torch.arange(left, left + w, device=flow.device, dtype=flow.dtype)
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")  # (h, w) each
    pos_x = grid_x + flow[:, 0]  # (N, h, w)
    pos_y = grid_y + flow[:, 1]
    grid = torch.stack(((2.0 * pos_x + 1.0) / full_w - 1.0, (2.0 * pos_y + 1.0) / full_h - 1.0), dim=-1)  # (N, h, w, 2)
    return F.grid_sample(supp, grid, mode="bilinear", padding_mode="border", align_corners=False)


def _upsample_window(flow: Tensor, top: int, left: int, full: tuple[int, int]) -> Tensor:
    """×2 flow of a window: `flow` (N, 2, h, w) at (top, left) of an (H, W) grid → (N, 2, 2h, 2w) at (2top, 2left)
    of the (2H, 2W) grid, identical to cropping `2 · interpolate(full_flow, ×2, align_corners=True)`."""
    n, _, h, w = flow.shape
    full_h, full_w = full
    ys = torch.arange(2 * top, 2 * top + 2 * h, device=flow.device, dtype=flow.dtype) * (full_h - 1) / (2 * full_h - 1)
    xs = torch.arange(2 * left, 2 * left + 2 * w, device=flow.device, dtype=flow.dtype) * (full_w - 1) / (2 * full_w - 1)
    grid_y, grid_x = torch.meshgrid(ys - top, xs - left, indexing="ij")  # (2h, 2w) positions in the window
    grid = torch.stack((2.0 * grid_x / max(w - 1, 1) - 1.0, 2.0 * grid_y / max(h - 1, 1) - 1.0), dim=-1)
    grid = grid.unsqueeze(0).expand(n, -1, -1, -1)  # (N, 2h, 2w, 2)
    return 2.0 * F.grid_sample(flow, grid, mode="bilinear", padding_mode="border", align_corners=True)


def _teacher_flow(
    teacher: Tensor, level: int, like: Tensor, top: int, left: int, noise: float, generator: torch.Generator | None
) -> Tensor:
    """The input flow of `level` under teacher forcing: level l − 1's ground truth upsampled ×2 (×2 in value), cut
    to the window of `like` (N, 2, h, w) at (top, left), plus a smooth random error (N, 2, h, w)."""
    coarse_stride = 2 ** (LEVELS - level)
    coarse = F.avg_pool2d(teacher, coarse_stride) / coarse_stride  # (N, 2, H/2s, W/2s)
    flow = 2.0 * F.interpolate(coarse, scale_factor=2.0, mode="bilinear", align_corners=True)
    h, w = like.shape[-2:]
    flow = flow[:, :, top : top + h, left : left + w]
    n = like.shape[0]
    cells = torch.randn(n, 2, max(1, h // 4), max(1, w // 4), generator=generator).to(like)
    amplitude = noise * torch.rand(n, 1, 1, 1, generator=generator).to(like)
    error = F.interpolate(cells, size=(h, w), mode="bilinear", align_corners=False) * amplitude
    return flow + error


def level_flows(
    spynet: SPyNet,
    ref: Tensor,
    supp: Tensor,
    *,
    window: int | None = None,
    generator: torch.Generator | None = None,
    tied: bool = False,
    teacher: Tensor | None = None,
    teacher_noise: float = 1.0,
) -> list[LevelFlow]:
    """Run SPyNet's levels on `ref`, `supp` (N, 3, H, W), H and W multiples of 32, keeping every level's flow.

    Args:
        window: side of the full-resolution window the two finest levels run on (even; None: whole frame).
        generator: draws the window's position (the same for the whole batch).
        tied: use level 0's module at every level (weight tying, an early phase of pretraining).
        teacher: ground-truth flow (N, 2, H, W) in full-resolution pixels. Given, every level l > 0 starts from
            the ground truth of level l − 1 (average-pooled, upsampled as SPyNet does) plus a smooth random error
            of up to `teacher_noise` pixels of level l, instead of the coarser level's own estimate ("teacher
            forcing"): each module then learns its real job, correcting a small residual, from the first step,
            and the levels no longer wait for each other.
    Returns:
        LEVELS `LevelFlow`s, coarsest first; the last one's flow is in full-resolution pixels.
    """
    if ref.shape != supp.shape or ref.dim() != 4 or ref.shape[-1] % 32 or ref.shape[-2] % 32:
        raise ValueError(f"ref and supp must be (N, 3, H, W) with H, W multiples of 32, got {tuple(ref.shape)}, {tuple(supp.shape)}")
    full_h, full_w = ref.shape[-2:]
    if window is not None and (window % 2 or window < 2 or window > min(full_h, full_w)):
        raise ValueError(f"window must be an even size ≤ min(H, W) = {min(full_h, full_w)}, got {window}")
    refs, supps = image_pyramid(ref), image_pyramid(supp)
    out: list[LevelFlow] = []
    n = ref.shape[0]
    flow = ref.new_zeros(n, 2, *refs[0].shape[-2:])
    top = left = 0
    for level in range(LEVELS):
        stride = 2 ** (LEVELS - 1 - level)
        h, w = refs[level].shape[-2:]
        first_windowed = window is not None and level == LEVELS - WINDOWED_LEVELS
        if level > 0 and (window is None or level < LEVELS - WINDOWED_LEVELS + 1):
            flow = 2.0 * F.interpolate(flow, scale_factor=2.0, mode="bilinear", align_corners=True)
        elif level > 0:
            prev_h, prev_w = refs[level - 1].shape[-2:]
            flow = _upsample_window(flow, top, left, (prev_h, prev_w))
            top, left = 2 * top, 2 * left
        if first_windowed:
            side = window // 2 ** (WINDOWED_LEVELS - 1)
            top = int(torch.randint(0, h - side + 1, (), generator=generator))
            left = int(torch.randint(0, w - side + 1, (), generator=generator))
            flow = flow[:, :, top : top + side, left : left + side]
        wh, ww = flow.shape[-2:]
        if teacher is not None and level > 0:
            flow = _teacher_flow(teacher, level, flow, top, left, teacher_noise, generator)
        ref_l = refs[level][:, :, top : top + wh, left : left + ww]
        warped = _warp_window(supps[level], flow, top, left)
        flow = flow + spynet.basic_module[0 if tied else level](torch.cat([ref_l, warped, flow], dim=1))
        out.append(LevelFlow(flow, top, left, stride))
    return out
