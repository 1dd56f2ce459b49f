"""Backward warping with dense optical flow, and flow composition.

Flows are `(..., 2, h, w)` with channel order (x, y) in pixels (DESIGN.md §3). A flow `f_ab` maps each
pixel p of frame a to its position p + f_ab(p) in frame b, so `flow_warp(frame_b, f_ab)` aligns frame b
to frame a ("backward warping").
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

PADDING_MODES = ("zeros", "border")


def base_grid(h: int, w: int, *, like: Tensor) -> Tensor:
    """Pixel-centre coordinates `(2, h, w)` with channel order (x, y), on `like`'s device and dtype."""
    ys = torch.arange(h, device=like.device, dtype=like.dtype)
    xs = torch.arange(w, device=like.device, dtype=like.dtype)
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack((grid_x, grid_y), dim=0)


def flow_warp(
    x: Tensor,
    flow: Tensor,
    *,
    padding_mode: str = "zeros",
    interpolation: str = "bilinear",
) -> Tensor:
    """Sample `x` at `p + flow(p)` for every pixel p.

    Args:
        x: `(..., C, h, w)` the image or feature map to warp.
        flow: `(..., 2, h, w)` displacement in pixels, channel order (x, y); the leading dims match `x`'s.
        padding_mode: "zeros" (samples outside the frame are 0) or "border" (edge values repeat).
        interpolation: "bilinear" or "nearest".
    Returns:
        `(..., C, h, w)` the warped map, same dtype and device as `x`.
    """
    if padding_mode not in PADDING_MODES:
        raise ValueError(f"padding_mode must be one of {PADDING_MODES}, got {padding_mode!r}")
    if flow.shape[-3] != 2 or flow.shape[-2:] != x.shape[-2:] or flow.shape[:-3] != x.shape[:-3]:
        raise ValueError(
            f"flow must have shape (..., 2, h, w) matching x (..., C, h, w) = {tuple(x.shape)}, "
            f"got {tuple(flow.shape)}"
        )
    *lead, c, h, w = x.shape
    x_flat = x.reshape(-1, c, h, w)  # (N, C, h, w)
    flow_flat = flow.reshape(-1, 2, h, w).to(x.dtype)  # (N, 2, h, w)
    position = base_grid(h, w, like=flow_flat) + flow_flat  # (N, 2, h, w), (x, y) in pixels
    # align_corners=False: pixel centre i sits at normalised (2i + 1) / size - 1.
    norm_x = (2.0 * position[:, 0] + 1.0) / w - 1.0
    norm_y = (2.0 * position[:, 1] + 1.0) / h - 1.0
    grid = torch.stack((norm_x, norm_y), dim=-1)  # (N, h, w, 2)
    warped = F.grid_sample(x_flat, grid, mode=interpolation, padding_mode=padding_mode, align_corners=False)
    return warped.reshape(*lead, c, h, w)


def compose_flows(flow_ab: Tensor, flow_bc: Tensor, *, padding_mode: str = "border") -> Tensor:
    """Chain two flows: `f_ac(p) = f_ab(p) + f_bc(p + f_ab(p))`.

    Args:
        flow_ab: `(..., 2, h, w)` flow from frame a to frame b.
        flow_bc: `(..., 2, h, w)` flow from frame b to frame c.
    Returns:
        `(..., 2, h, w)` flow from a to c, so `flow_warp(x_c, f_ac) ≈ flow_warp(flow_warp(x_c, f_bc), f_ab)`.
    """
    return flow_ab + flow_warp(flow_bc, flow_ab, padding_mode=padding_mode)

def resize_flow(flow: Tensor, size: tuple[int, int]) -> Tensor:
    """Resize a flow `(N, 2, h0, w0)` to `(N, 2, *size)`, rescaling its (x, y) displacements."""
    h0, w0 = flow.shape[-2:]
    if (h0, w0) == tuple(size):
        return flow
    shrink = size[0] < h0 or size[1] < w0
    resized = F.interpolate(flow, size=size, mode="bilinear", align_corners=False, antialias=shrink)
    return resized * resized.new_tensor([size[1] / w0, size[0] / h0]).view(1, 2, 1, 1)
