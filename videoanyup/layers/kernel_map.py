"""The hyper-upsampler's product `fold(s ⊙ w)` with a number of operations that does not depend on the scale.

Expanding the bilinear sampling and the fold, the product at HR pixel (i, j) is a linear combination of
the LR features in an E×E patch at the pixel's anchor (A(i), A(j)) = (⌊u_i⌋, ⌊u_j⌋):

    y[c, i, j] = Σ_{u,v} M[c, i, u, j, v] · feat[c, A(i) + e0 + u, A(j) + e0 + v]
    M[c, i, u, j, v] = Σ_{ky,kx} w[c, ky, kx, φ(i − f_ky), φ(j − f_kx)] · R[i, ky, u] · S[j, kx, v]

(ky, kx: the K×K kernel positions, with unfold offset d = ky − K//2 and fold offset f = d, or 0 for a
plain sum; φ: the phase; R: per axis, the bilinear weights with which the source pixel i − f reads the
LR rows i0 + d, i0 + 1 + d of the unfolded channel d, with torch's clamping at the frame edge and nothing
where i − f leaves the frame; the features are zero-padded, which is the unfold's own padding; S the same
for columns). R depends on i only through its *class*: its phase, on the interior rows (every source in
the frame, no clamping), or the row itself in the few edge rows at the top and bottom. So M takes
Q_h × Q_w distinct values, computed once per grid and cached (`GridPlan.table`). Then:

- interior: `a(i + P) = a(i) + s`, so the HR pixels of one phase pair are a depthwise convolution of the
  LR features with stride s. The kernels of all P_h × P_w phase pairs, each shifted by its anchor offset so
  that they share a start, are the output channels of one grouped convolution; a pixel shuffle
  interleaves them. One convolution per tile at every scale.
- edge rows and columns: a gather of the E×E patches at the anchors and of M by class, one batched product.
- where the convolution's stacked kernels would be too large (grids with very many phases) or gradients
  flow through the kernels without the grid's table, the gather does the whole tile with the kernels of
  its own phases only.

Every index is made once per (grid, tile) and kept on the device: no host reads per frame.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch
from einops import rearrange
from torch import Tensor

from videoanyup.functional.grid import Region, num_phases


@dataclass(frozen=True)
class AxisMap:
    """How the HR rows (or columns) of a grid read the LR features.

    Attributes:
        period, stride: P phases per s LR pixels.
        extent: E, the patch side; pad: (before, after) zero padding of the features on this axis.
        interior: `(lo, hi)`, the rows whose class is their phase; the others are edge rows.
        klass: `(H,)` int64, the class of each row: its phase in `[0, P)` inside `interior`, `P + k` for the
            k-th edge row.
        weights: `(P + n_edge, K, E)` float64, R of each class (kernel row ky's weight on patch row u).
        source_phase: `(P + n_edge, K)` int64, the phase of the source pixel i − f_ky of each class (0 where
            it lies outside the frame; its weights are 0).
        anchor_index: `(H, E)` int64, the LR rows of each HR row's patch in the padded features.
        conv_start: the padded LR row of phase 0's patch in period 0; shift: `(P,)` anchor offset of each
            phase from phase 0's (so the stacked kernels have `extent + max(shift)` rows).
    """

    period: int
    stride: int
    extent: int
    pad: tuple[int, int]
    interior: tuple[int, int]
    klass: Tensor
    weights: Tensor
    source_phase: Tensor
    anchor_index: Tensor
    conv_start: int
    shift: tuple[int, ...]

    @property
    def conv_extent(self) -> int:
        return self.extent + max(self.shift)


def _anchor(q: int, lr_len: int, hr_len: int) -> tuple[int, float]:
    """`(⌊u_q⌋, u_q − ⌊u_q⌋)` of any integer HR position q, from exact integer arithmetic."""
    numerator = (2 * q + 1) * lr_len - hr_len  # u_q = numerator / (2H)
    a = numerator // (2 * hr_len)
    return a, (numerator - 2 * hr_len * a) / (2 * hr_len)


def _taps(q: int, lr_len: int, hr_len: int, clamp: bool) -> list[tuple[int, float]]:
    """The bilinear taps (LR index, weight) of HR position q. `clamp`: as `F.interpolate(mode="bilinear",
    align_corners=False)` and `functional.resize.bilinear_upsample` take them; else the periodic formula."""
    if not clamp:
        a, frac = _anchor(q, lr_len, hr_len)
        return [(a, 1.0 - frac), (a + 1, frac)]
    source = max((q + 0.5) * (lr_len / hr_len) - 0.5, 0.0)
    i0 = min(math.floor(source), lr_len - 1)
    frac = source - i0
    return [(i0, 1.0 - frac), (min(i0 + 1, lr_len - 1), frac)]


def _is_interior(i: int, lr_len: int, hr_len: int, folds: list[int]) -> bool:
    """Every source pixel of row i is in the frame and samples without clamping."""
    for f in folds:
        q = i - f
        raw = (q + 0.5) * (lr_len / hr_len) - 0.5
        if not (0 <= q < hr_len and 0.0 <= raw <= lr_len - 1):
            return False
    return True


@functools.lru_cache(maxsize=64)
def axis_map(lr_len: int, hr_len: int, kernel_size: int, fold: bool) -> AxisMap:
    """The `AxisMap` of one axis (CPU tensors, memoised: treat them as read-only)."""
    r = kernel_size // 2
    period, stride = num_phases(lr_len, hr_len), lr_len // math.gcd(lr_len, hr_len)
    folds = [ky - r if fold else 0 for ky in range(kernel_size)]
    good = [_is_interior(i, lr_len, hr_len, folds) for i in range(hr_len)]
    lo = next((i for i in range(hr_len) if good[i]), hr_len)
    hi = next((i + 1 for i in range(hr_len - 1, -1, -1) if good[i]), lo)
    hi = max(lo, hi)
    edge_rows = [i for i in range(hr_len) if not lo <= i < hi]

    def entries(i: int, clamp: bool) -> tuple[list[tuple[int, int, float]], list[int]]:
        """[(ky, LR row, weight)] and the source phases of row (or phase) i."""
        out, phases = [], []
        for ky, f in enumerate(folds):
            q = i - f
            if clamp and not 0 <= q < hr_len:
                phases.append(0)  # the fold reaches past the frame: no product there
                continue
            phases.append(q % period)
            out += [(ky, lr + ky - r, weight) for lr, weight in _taps(q, lr_len, hr_len, clamp) if weight != 0.0]
        return out, phases

    classes = [entries(p, clamp=False) for p in range(period)] + [entries(i, clamp=True) for i in edge_rows]
    anchors = [_anchor(p, lr_len, hr_len)[0] for p in range(period)] + [_anchor(i, lr_len, hr_len)[0] for i in edge_rows]
    offsets = [lr - anchors[k] for k, (rows, _) in enumerate(classes) for _, lr, _ in rows]
    e_min, extent = min(offsets), max(offsets) - min(offsets) + 1
    weights = torch.zeros(len(classes), kernel_size, extent, dtype=torch.float64)
    for k, (rows, _) in enumerate(classes):
        for ky, lr, weight in rows:
            weights[k, ky, lr - anchors[k] - e_min] += weight
    source_phase = torch.tensor([phases for _, phases in classes], dtype=torch.int64)
    klass = [i % period if lo <= i < hi else period + edge_rows.index(i) for i in range(hr_len)]

    # Zero padding: the gathers read rows A(i) + e_min .. + E − 1 of every row i; the convolution reads
    # whole periods, up to the period that holds the last row.
    shift = [a - anchors[0] for a in anchors[:period]]
    all_anchors = [_anchor(i, lr_len, hr_len)[0] for i in range(hr_len)]
    first = min(min(all_anchors), anchors[0]) + e_min
    periods = -(-hr_len // period)
    last = max(max(all_anchors) + e_min + extent - 1, anchors[0] + (periods - 1) * stride + e_min + extent + max(shift) - 1)
    pad = (max(0, -first), max(0, last - (lr_len - 1)))
    anchor_index = torch.tensor(all_anchors)[:, None] + e_min + pad[0] + torch.arange(extent)
    return AxisMap(
        period=period,
        stride=stride,
        extent=extent,
        pad=pad,
        interior=(lo, hi),
        klass=torch.tensor(klass, dtype=torch.int64),
        weights=weights,
        source_phase=source_phase,
        anchor_index=anchor_index,
        conv_start=anchors[0] + e_min + pad[0],
        shift=tuple(shift),
    )


def kernel_table(kernels: Tensor, row_phase: Tensor, col_phase: Tensor, row_weights: Tensor, col_weights: Tensor) -> Tensor:
    """M of some row and column classes.

    Args:
        kernels: `(C·K², P_h', P_w')` kernels by phase (`HyperKernel.phase_kernels` layout, index c·K² + k).
        row_phase: `(Qr, K)` int64, for each row class and kernel row, the phase index into `kernels`' dim 1.
        col_phase: `(Qc, K)` int64, the same for columns (dim 2).
        row_weights: `(Qr, K, E)`, col_weights: `(Qc, K, E)`, R and S of those classes.
    Returns:
        `(C, Qr, E, Qc, E)` in the kernels' dtype and device.
    """
    k = row_phase.shape[1]
    channels = kernels.shape[0] // (k * k)
    device = kernels.device
    w = kernels.view(channels, k, k, *kernels.shape[-2:])  # (C, ky, kx, P_h', P_w')
    ky = torch.arange(k, device=device)
    w = w[
        :,
        ky[None, None, :, None],
        ky[None, None, None, :],
        row_phase.to(device)[:, None, :, None],
        col_phase.to(device)[None, :, None, :],
    ]  # (C, Qr, Qc, ky, kx): the kernel of each source pixel
    row_weights = row_weights.to(device=device, dtype=kernels.dtype)
    col_weights = col_weights.to(device=device, dtype=kernels.dtype)
    return torch.einsum("crpyx,ryu,pxv->crupv", w, row_weights, col_weights).contiguous()


def _shifted(axis: AxisMap, device) -> tuple[Tensor, Tensor]:
    """Indices that place each phase's E taps at its anchor offset in the stacked kernel's
    `conv_extent` taps: `(P, E')` into the E taps padded by max(shift) zeros on each side."""
    d = max(axis.shift)
    taps = torch.arange(axis.conv_extent)[None, :] - torch.tensor(axis.shift)[:, None] + d  # (P, E')
    return torch.arange(axis.period, device=device), taps.to(device)


class GridPlan:
    """The index arithmetic of one grid on one device, made once: axis maps and their device indices, and
    per tile the slices every frame reuses.

    Args:
        lr_size, hr_size: the grid.
        kernel_size: K; fold: scatter-add fold (True) or plain sum (False).
        device: where the indices live.
    """

    def __init__(self, lr_size: tuple[int, int], hr_size: tuple[int, int], kernel_size: int, fold: bool, device) -> None:
        self.lr_size, self.hr_size, self.kernel_size, self.device = lr_size, hr_size, kernel_size, device
        self.rows = axis_map(lr_size[0], hr_size[0], kernel_size, fold)
        self.cols = axis_map(lr_size[1], hr_size[1], kernel_size, fold)
        self.pad = (*self.cols.pad, *self.rows.pad)  # F.pad order: left, right, top, bottom
        self.interior = (*self.rows.interior, *self.cols.interior)
        self._tiles: dict[Region, TilePlan] = {}
        self._row_shift = _shifted(self.rows, device)
        self._col_shift = _shifted(self.cols, device)

    def tile(self, region: Region) -> "TilePlan":
        if region not in self._tiles:
            with torch.inference_mode(False):  # indices that can serve autograd later
                self._tiles[region] = TilePlan(self, region)
        return self._tiles[region]

    def table_numel(self, channels: int) -> int:
        """Values of `table`."""
        return channels * self.rows.extent * self.cols.extent * self.rows.weights.shape[0] * self.cols.weights.shape[0]

    def conv_numel(self, channels: int) -> int:
        """Values of `conv_weights`."""
        return channels * self.rows.period * self.cols.period * self.rows.conv_extent * self.cols.conv_extent

    def table(self, kernels: Tensor) -> Tensor:
        """M of every class of the grid, `(C, Q_h, E, Q_w, E)`, from its phase kernels `(C·K², P_h, P_w)`."""
        rows, cols = self.rows, self.cols
        return kernel_table(kernels, rows.source_phase, cols.source_phase, rows.weights, cols.weights)

    def conv_weights(self, table: Tensor) -> Tensor:
        """The interior's stacked kernels `(C·P_h·P_w, 1, E_h', E_w')` from `table`: phase pair (r, p)'s kernel,
        shifted by its anchor offsets, is output channel c·P_h·P_w + r·P_w + p."""
        d_h, d_w = max(self.rows.shift), max(self.cols.shift)
        clean = table[:, : self.rows.period, :, : self.cols.period]  # (C, P_h, E, P_w, E)
        padded = torch.nn.functional.pad(clean, (d_w, d_w, 0, 0, d_h, d_h))  # zeros around each kernel
        row_phase, row_taps = self._row_shift
        col_phase, col_taps = self._col_shift
        stacked = padded[
            :,
            row_phase[:, None, None, None],
            row_taps[:, None, :, None],
            col_phase[None, :, None, None],
            col_taps[None, :, None, :],
        ]  # (C, P_h, P_w, E_h', E_w')
        return stacked.reshape(-1, 1, *stacked.shape[-2:])

    def edge_bands(self, region: Region) -> list[Region]:
        """The parts of `region` outside the interior: top and bottom bands over the region's width, left and
        right bands between them."""
        top, bottom, left, right = region
        lo, hi, c_lo, c_hi = self.interior
        mid_top, mid_bottom = min(max(top, lo), bottom), max(min(bottom, hi), top)
        if mid_top >= mid_bottom:  # no interior row: one band
            return [region]
        bands = [(top, mid_top, left, right), (mid_bottom, bottom, left, right)]
        bands += [(mid_top, mid_bottom, left, min(right, max(c_lo, left))), (mid_top, mid_bottom, max(left, min(c_hi, right)), right)]
        return [b for b in bands if b[0] < b[1] and b[2] < b[3]]


class TilePlan:
    """The indices of one HR region of a grid, made once and reused by every frame.

    Attributes:
        row_class, col_class: `(th,)`, `(tw,)` classes of the region's rows and columns (device).
        row_index, col_index: `(th·E,)`, `(tw·E,)` rows / columns of the padded features that the patches
            read (device).
        row_phases, col_phases: the phases the region's classes read (CPU, sorted), for kernels computed for
            this region alone; `local_row_class`, `local_col_class` (device) then index `table`'s classes.
        conv: `(row_start, row_stop, col_start, col_stop, top_crop, left_crop)`: the padded LR window the
            interior convolution reads for this region, and where the region starts in its output.
    """

    def __init__(self, grid: GridPlan, region: Region) -> None:
        top, bottom, left, right = region
        device = grid.device
        self.row_index, self.row_class, self._rows = _axis_tile(grid.rows, top, bottom, device)
        self.col_index, self.col_class, self._cols = _axis_tile(grid.cols, left, right, device)
        self.row_phases, self.local_row_class = self._rows[0], self._rows[1].to(device)
        self.col_phases, self.local_col_class = self._cols[0], self._cols[1].to(device)
        rows, cols = grid.rows, grid.cols
        m0, m1 = top // rows.period, -(-bottom // rows.period)
        n0, n1 = left // cols.period, -(-right // cols.period)
        row_start = rows.conv_start + m0 * rows.stride
        col_start = cols.conv_start + n0 * cols.stride
        self.conv = (
            row_start,
            row_start + (m1 - m0 - 1) * rows.stride + rows.conv_extent,
            col_start,
            col_start + (n1 - n0 - 1) * cols.stride + cols.conv_extent,
            top - m0 * rows.period,
            left - n0 * cols.period,
        )

    def table(self, kernels: Tensor) -> Tensor:
        """M of the region's classes, `(C, Q_h', E, Q_w', E)`, from the kernels `(C·K², P_h', P_w')` of the
        phases `row_phases` × `col_phases` (in that order)."""
        (_, _, row_phase, row_weights), (_, _, col_phase, col_weights) = self._rows, self._cols
        return kernel_table(kernels, row_phase, col_phase, row_weights, col_weights)


def _axis_tile(axis: AxisMap, start: int, stop: int, device):
    """One axis of a `TilePlan`: device patch indices, device classes, and (phases read, local class index,
    phase index per class and kernel row, weights per class) for a region-only table."""
    index = axis.anchor_index[start:stop].flatten().to(device)
    klass = axis.klass[start:stop]
    classes, local = klass.unique(return_inverse=True)
    phases = axis.source_phase[classes].unique()  # sorted
    phase_index = torch.searchsorted(phases, axis.source_phase[classes])  # (Q', K)
    return index, klass.to(device), (phases, local, phase_index, axis.weights[classes])


def gather_product(padded: Tensor, tile: TilePlan, kernel_map: Tensor, extent: tuple[int, int]) -> Tensor:
    """`fold(s ⊙ w)` on a region from its patches and kernel map.

    Args:
        padded: `(N, C, h', w')` the features zero-padded by `GridPlan.pad`.
        tile: the region's `TilePlan`; kernel_map: `(C, th, E, tw, E)` M of its pixels; extent: (E_h, E_w).
    Returns:
        `(N, C, th, tw)`.
    """
    n, c = padded.shape[:2]
    th, tw = kernel_map.shape[1], kernel_map.shape[3]
    patches = padded.flatten(0, 1).index_select(1, tile.row_index).index_select(2, tile.col_index)  # (N·C, th·E, tw·E)
    patches = patches.view(n, c, th, extent[0], tw, extent[1])  # (N, C, th, E, tw, E)
    return (patches * kernel_map).sum(dim=(3, 5))


def convolve(padded: Tensor, tile: TilePlan, weights: Tensor, grid: GridPlan, size: tuple[int, int]) -> Tensor:
    """The periodic formula on a region (exact on the interior) with one grouped convolution.

    Args:
        padded: `(N, C, h', w')` the features zero-padded by `GridPlan.pad`.
        weights: `GridPlan.conv_weights`, `(C·P_h·P_w, 1, E_h', E_w')`.
        size: (th, tw) of the region.
    Returns:
        `(N, C, th, tw)`.
    """
    row_start, row_stop, col_start, col_stop, top, left = tile.conv
    c = padded.shape[1]
    window = padded[:, :, row_start:row_stop, col_start:col_stop]
    out = torch.nn.functional.conv2d(window, weights, stride=(grid.rows.stride, grid.cols.stride), groups=c)
    out = rearrange(out, "n (c r p) m q -> n c (m r) (q p)", c=c, r=grid.rows.period)  # (N, C, M·P_h, Mc·P_w)
    return out[..., top : top + size[0], left : left + size[1]]
