"""Resizing: degradation (bicubic / antialiased downsampling) and bilinear / bicubic sampling of any HR region.

`bilinear_upsample` and `bicubic_upsample` reproduce `F.interpolate(x, size, mode=…, align_corners=False)`
but can return any rectangular region of the output on its own, which the tiled upsamplers need.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from videoanyup.functional.gather import gather_rows, transpose_maps
from videoanyup.functional.grid import Region, check_region


def downsample(x: Tensor, size: Sequence[int], *, antialias: bool = False) -> Tensor:
    """Bicubic resize of `(..., C, H, W)` to `(..., C, h, w)` = `size`.

    `antialias=False` is torch's plain bicubic (the degradation of the AVSR papers, DESIGN.md §4.7);
    `antialias=True` low-pass filters first, like MATLAB's / PIL's `imresize`. Values are not clamped.
    """
    *lead, c, height, width = x.shape
    flat = x.reshape(-1, c, height, width)
    out = F.interpolate(flat, size=tuple(size), mode="bicubic", align_corners=False, antialias=antialias)
    return out.reshape(*lead, c, *out.shape[-2:])


_TAPS: dict[tuple, tuple] = {}  # memoised taps, see `_memo`
_TAPS_LIMIT = 256


def _memo(make, *key) -> tuple:
    """`make(*key)`, memoised: every frame of a video asks for the same taps. Made outside inference mode
    (so they can serve autograd later) and moved to the device once. A plain dict rather than
    `functools.lru_cache`, so that `torch.compile` reads a warm entry as a constant instead of tracing
    `make` (whose host reads would break the graph)."""
    full = (make.__name__, *key)
    if full not in _TAPS:
        if len(_TAPS) >= _TAPS_LIMIT:
            _TAPS.clear()
        with torch.inference_mode(False):
            _TAPS[full] = make(*key)
    return _TAPS[full]


def _axis_taps(lr_len: int, hr_len: int, start: int, stop: int, dtype, device) -> tuple[Tensor, Tensor, Tensor, int, int]:
    """Bilinear taps `(i0, i1, frac)` of HR positions `start..stop-1` as `F.interpolate` computes them, on
    `device`, with the region's LR support `(lo, hi)` as Python ints (the taps count from lo), so that no
    frame reads a tensor value on the host. Memoised."""
    return _memo(_make_axis_taps, lr_len, hr_len, start, stop, dtype, device)


def _make_axis_taps(lr_len: int, hr_len: int, start: int, stop: int, dtype, device) -> tuple[Tensor, Tensor, Tensor, int, int]:
    index = torch.arange(start, stop, dtype=torch.float64)
    source = ((index + 0.5) * (lr_len / hr_len) - 0.5).clamp(min=0.0)
    i0 = source.floor().long().clamp(max=lr_len - 1)
    i1 = (i0 + 1).clamp(max=lr_len - 1)
    frac = (source - i0.to(torch.float64)).to(dtype)
    lo, hi = int(i0[0]), int(i1[-1]) + 1  # taps are monotonic
    return (*(t.to(device) for t in (i0 - lo, i1 - lo, frac)), lo, hi)


def bilinear_upsample(x: Tensor, size: Sequence[int], region: Region | None = None) -> Tensor:
    """Bilinear resize (align_corners=False) of `(..., C, h, w)` to `size = (H, W)`, optionally a region.

    Separable: rows, then columns, each a gather of the two taps and a lerp, over the LR support of the
    region only (gathers along dim 1 of 3-D views, torch's fast path: see `functional.gather`).

    Args:
        x: `(..., C, h, w)`.
        size: `(H, W)` of the full output grid.
        region: `(top, bottom, left, right)` of the output to compute; None for all of it.
    Returns:
        `(..., C, bottom - top, right - left)`.
    """
    *lead, h, w = x.shape
    top, bottom, left, right = check_region(region, (int(size[0]), int(size[1])))
    r0, r1, rf, row_lo, row_hi = _axis_taps(h, int(size[0]), top, bottom, x.dtype, x.device)
    c0, c1, cf, col_lo, col_hi = _axis_taps(w, int(size[1]), left, right, x.dtype, x.device)
    support = x[..., row_lo:row_hi, col_lo:col_hi].reshape(-1, row_hi - row_lo, col_hi - col_lo)  # (M, sh, sw)
    rows = torch.lerp(gather_rows(support, r0), gather_rows(support, r1), rf[:, None])  # (M, th, sw)
    rows = transpose_maps(rows)  # (M, sw, th)
    out = torch.lerp(gather_rows(rows, c0), gather_rows(rows, c1), cf[:, None])  # (M, tw, th)
    return transpose_maps(out).view(*lead, bottom - top, right - left)


UPSAMPLE_MODES = ("bilinear", "bicubic")
CUBIC_A = -0.75  # torch's (and OpenCV's) cubic convolution coefficient


def _cubic_weights(t: Tensor) -> Tensor:
    """Keys' cubic convolution weights of the four taps at offsets −1, 0, 1, 2 for fractions `t` `(L,)` → `(L, 4)`."""
    a = CUBIC_A
    near = lambda x: ((a + 2) * x - (a + 3)) * x * x + 1  # |x| ≤ 1
    far = lambda x: ((a * x - 5 * a) * x + 8 * a) * x - 4 * a  # 1 < |x| < 2
    return torch.stack((far(t + 1), near(t), near(1 - t), far(2 - t)), dim=-1)


def _cubic_axis_taps(lr_len: int, hr_len: int, start: int, stop: int, dtype, device) -> tuple[Tensor, Tensor, int, int]:
    """Bicubic taps of HR positions `start..stop-1` as `F.interpolate(mode="bicubic")` computes them: indices
    `(L, 4)` (clamped to the axis, torch's border rule; counting from lo) and weights `(L, 4)` on `device`,
    with the LR support `(lo, hi)` as Python ints. Memoised."""
    return _memo(_make_cubic_axis_taps, lr_len, hr_len, start, stop, dtype, device)


def _make_cubic_axis_taps(lr_len: int, hr_len: int, start: int, stop: int, dtype, device) -> tuple[Tensor, Tensor, int, int]:
    index = torch.arange(start, stop, dtype=torch.float64)
    source = (index + 0.5) * (lr_len / hr_len) - 0.5  # not clamped at 0 for cubic, as torch does
    base = source.floor()
    weights = _cubic_weights(source - base).to(dtype)
    taps = (base.long()[:, None] + torch.arange(-1, 3)).clamp(0, lr_len - 1)
    lo, hi = int(taps.min()), int(taps.max()) + 1
    return (taps - lo).to(device), weights.to(device), lo, hi


def _cubic_pass(x: Tensor, taps: Tensor, weights: Tensor) -> Tensor:
    """`(M, A, B)` → `(M, L, B)`: out[:, i] = Σ_k weights[i, k] · x[:, taps[i, k]]."""
    picked = gather_rows(x, taps.flatten())  # (M, L·4, B)
    picked = picked.view(x.shape[0], taps.shape[0], 4, x.shape[-1])
    return torch.einsum("mlkb,lk->mlb", picked, weights)


def bicubic_upsample(x: Tensor, size: Sequence[int], region: Region | None = None) -> Tensor:
    """`bilinear_upsample`'s contract (same arguments, region and output shape) with torch's bicubic:
    equals `F.interpolate(x, size, mode="bicubic", align_corners=False)` (a = −0.75, not clamped) cropped to
    `region`, to float rounding. Separable, each axis a gather of four taps over the region's LR support."""
    *lead, h, w = x.shape
    top, bottom, left, right = check_region(region, (int(size[0]), int(size[1])))
    row_taps, row_weights, row_lo, row_hi = _cubic_axis_taps(h, int(size[0]), top, bottom, x.dtype, x.device)
    col_taps, col_weights, col_lo, col_hi = _cubic_axis_taps(w, int(size[1]), left, right, x.dtype, x.device)
    support = x[..., row_lo:row_hi, col_lo:col_hi].reshape(-1, row_hi - row_lo, col_hi - col_lo)  # (M, sh, sw)
    rows = transpose_maps(_cubic_pass(support, row_taps, row_weights))  # (M, sw, th)
    out = _cubic_pass(rows, col_taps, col_weights)  # (M, tw, th)
    return transpose_maps(out).view(*lead, bottom - top, right - left)


def prepare_upsample(lr_size: Sequence[int], size: Sequence[int], region: Region | None = None, *, mode: str = "bilinear", dtype=torch.float32, device="cpu") -> None:
    """Make (and memoise) the taps `upsample` will use for this grid, region, dtype and device, so that a
    compiled caller traces no tap arithmetic."""
    top, bottom, left, right = check_region(region, (int(size[0]), int(size[1])))
    make = {"bilinear": _axis_taps, "bicubic": _cubic_axis_taps}[mode]
    device = torch.device(device)
    make(int(lr_size[0]), int(size[0]), top, bottom, dtype, device)
    make(int(lr_size[1]), int(size[1]), left, right, dtype, device)


def upsample(x: Tensor, size: Sequence[int], region: Region | None = None, *, mode: str = "bilinear") -> Tensor:
    """`bilinear_upsample` or `bicubic_upsample` by `mode`."""
    if mode == "bilinear":
        return bilinear_upsample(x, size, region)
    if mode == "bicubic":
        return bicubic_upsample(x, size, region)
    raise ValueError(f"mode must be one of {UPSAMPLE_MODES}, got {mode!r}")
