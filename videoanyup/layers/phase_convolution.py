"""The hyper-upsampler's product `fold(s ⊙ w)` evaluated as strided depthwise convolutions, phase by phase.

Away from the frame borders, the folded product at HR pixel q is a fixed linear combination of the LR
features around q's anchor LR pixel `a(q) = ⌊u_q⌋`:

    y[c, q] = Σ_k w[c, k, φ(q − f_k)] · Σ_t β_t(q − f_k) · feat[c, a(q − f_k) + t + d_k]

(k: the K×K kernel positions with LR offset d_k and fold offset f_k = d_k, or 0 for a plain sum; t: the two
bilinear taps per axis with weights β; φ: the phase). Every factor depends on q only through its phase,
and `a(q + P) = a(q) + s` with `s = h / gcd(H, h)`, so the HR pixels of one phase are a depthwise
convolution of the LR features with stride s, and each phase has its own small kernel. The kernels of
all column phases are stacked as output channels of one grouped convolution (each shifted by its anchor
offset, so they share a start), one call per row phase, and the results are interleaved like a pixel
shuffle. This is exact — the same sums in another order — and avoids the `(C·K², H, W)` intermediates.

Rows and columns where the bilinear sampling clamps at the frame edge, or where the fold reaches past
it, are not covered: `interior` says which range is, and the caller computes the rest the general way.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor

from videoanyup.functional.grid import num_phases


@dataclass(frozen=True)
class AxisPlan:
    """How one axis of the HR grid reads the LR grid, per output phase.

    Attributes:
        period: P, phases along the axis; stride: s, LR pixels per period.
        anchor: `(P,)` a(r) for the output phase r (the first period).
        taps: `(P, n_fold, E)` coefficient of LR offset `e_min + j` from the anchor for output phase r and
            fold offset index i (the bilinear weights of the source pixel q − f_i).
        source_phase: `(P, n_fold)` phase of the source pixel q − f_i.
        e_min: the smallest LR offset; E the kernel extent.
        interior: `(lo, hi)` HR positions computed exactly here.
    """

    period: int
    stride: int
    anchor: Tensor
    taps: Tensor
    source_phase: Tensor
    e_min: int
    interior: tuple[int, int]


def _floor_div(a: int, b: int) -> int:
    return a // b  # python floors for negative numbers too


def plan_axis(lr_len: int, hr_len: int, fold_offsets: list[int], unfold_offsets: list[int]) -> AxisPlan:
    """Exact integer geometry of one axis. `fold_offsets[i]` and `unfold_offsets[i]` belong to kernel row/col i."""
    period = num_phases(lr_len, hr_len)
    stride = lr_len // math.gcd(lr_len, hr_len)

    def anchor_and_frac(p: int) -> tuple[int, float]:
        numerator = (2 * p + 1) * lr_len - hr_len  # u_p = numerator / (2H), any integer p
        a = _floor_div(numerator, 2 * hr_len)
        return a, (numerator - 2 * hr_len * a) / (2 * hr_len)

    entries = []  # (r, i, e, weight)
    for r in range(period):
        a_r, _ = anchor_and_frac(r)
        for i, (f, d) in enumerate(zip(fold_offsets, unfold_offsets)):
            a_p, frac = anchor_and_frac(r - f)
            for t, weight in ((0, 1.0 - frac), (1, frac)):
                entries.append((r, i, a_p - a_r + t + d, weight))
    e_min = min(e for _, _, e, _ in entries)
    extent = max(e for _, _, e, _ in entries) - e_min + 1
    taps = torch.zeros(period, len(fold_offsets), extent, dtype=torch.float64)
    for r, i, e, weight in entries:
        taps[r, i, e - e_min] += weight
    anchor = torch.tensor([anchor_and_frac(r)[0] for r in range(period)], dtype=torch.int64)
    source_phase = torch.tensor([[(r - f) % period for f in fold_offsets] for r in range(period)], dtype=torch.int64)

    # Exact where every source pixel q − f is inside the frame and samples without clamping.
    def clean(p: int) -> bool:
        u = ((2 * p + 1) * lr_len - hr_len) / (2 * hr_len)
        return 0 <= p < hr_len and 0.0 <= u <= lr_len - 1

    good = [all(clean(q - f) for f in fold_offsets) for q in range(hr_len)]
    lo = next((q for q in range(hr_len) if good[q]), hr_len)
    hi = next((q + 1 for q in range(hr_len - 1, -1, -1) if good[q]), lo)
    return AxisPlan(period, stride, anchor, taps, source_phase, e_min, (lo, max(lo, hi)))


class PhaseConvolution:
    """Evaluates `fold(s ⊙ w)` on interior regions of one grid (one `HyperUpsampler` grid at a time).

    Args:
        table: `(C·n, P_h, P_w)` kernels by phase (`HyperKernel.phase_kernels`), index c·n + k.
        kernel_size: K; n = K².
        lr_size, hr_size: the grid.
        fold: True for the scatter-add fold, False for the plain sum over the K² positions.
    """

    def __init__(self, table: Tensor, kernel_size: int, lr_size: tuple[int, int], hr_size: tuple[int, int], fold: bool) -> None:
        r = kernel_size // 2
        span = list(range(-r, r + 1))
        folds = span if fold else [0] * kernel_size
        self.rows = plan_axis(lr_size[0], hr_size[0], folds, span)
        self.cols = plan_axis(lr_size[1], hr_size[1], folds, span)
        self.lr_size, self.hr_size = lr_size, hr_size
        channels = table.shape[0] // kernel_size**2
        p_h, p_w = self.rows.period, self.cols.period
        w = table.view(channels, kernel_size, kernel_size, p_h, p_w)  # (C, ky, kx, P_h, P_w)
        k = torch.arange(kernel_size, device=table.device)
        source_rows = self.rows.source_phase.to(table.device)  # (P_h, ky)
        source_cols = self.cols.source_phase.to(table.device)  # (P_w, kx)
        w = w[
            torch.arange(channels, device=table.device)[:, None, None, None, None],
            k[None, None, None, :, None],
            k[None, None, None, None, :],
            source_rows[None, :, None, :, None],
            source_cols[None, None, :, None, :],
        ]  # (C, r, px, ky, kx): the kernel of each source pixel q − f
        taps_r = self.rows.taps.to(table)  # (P_h, ky, Er)
        taps_c = self.cols.taps.to(table)  # (P_w, kx, Ec)
        kernels = torch.einsum("crpyx,ryu,pxv->crpuv", w, taps_r, taps_c)  # (C, P_h, P_w, Er, Ec)
        # Shift each column phase's kernel by its anchor offset so all column phases share a start.
        shift = (self.cols.anchor - self.cols.anchor[0]).tolist()
        width = kernels.shape[-1] + max(shift)
        # Padding and stacking (not slice assignment into a zero tensor): with gradients, each slice write
        # would make backward clone the whole stack, P_w times over — quadratic in P_w at random scales.
        extent = kernels.shape[-1]
        placed = torch.stack(
            [F.pad(kernel, (offset, width - extent - offset)) for kernel, offset in zip(kernels.unbind(2), shift)],
            dim=2,
        )  # (C, P_h, P_w, Er, Ec')
        self.weights = rearrange(placed, "c r p u v -> r (c p) 1 u v")  # per row phase: (C·P_w, 1, Er, Ec')
        self.channels = channels
        self.margin = max(abs(self.rows.e_min), abs(self.cols.e_min)) + max(self.rows.stride, self.cols.stride) + max(kernels.shape[-2], width) + 2

    @property
    def interior(self) -> tuple[int, int, int, int]:
        return (*self.rows.interior, *self.cols.interior)

    def __call__(self, padded: Tensor, region: tuple[int, int, int, int]) -> Tensor:
        """`fold(s ⊙ w)` on `region` (inside `interior`): `(N, C, th, tw)`.

        Args:
            padded: `(N, C, h + 2·margin, w + 2·margin)` the LR features, zero-padded by `self.margin`.
        """
        top, bottom, left, right = region
        rows, cols = self.rows, self.cols
        m0, m1 = top // rows.period, -(-bottom // rows.period)
        n0, n1 = left // cols.period, -(-right // cols.period)
        pad = self.margin
        kr, kc = self.weights.shape[-2:]
        col_start = int(cols.anchor[0]) + n0 * cols.stride + cols.e_min + pad
        col_stop = col_start + (n1 - n0 - 1) * cols.stride + kc
        outs = []
        for r in range(rows.period):
            row_start = int(rows.anchor[r]) + m0 * rows.stride + rows.e_min + pad
            row_stop = row_start + (m1 - m0 - 1) * rows.stride + kr
            window = padded[:, :, row_start:row_stop, col_start:col_stop]
            outs.append(F.conv2d(window, self.weights[r], stride=(rows.stride, cols.stride), groups=self.channels))
        block = torch.stack(outs, dim=3)  # (N, C·P_w, M, P_h, Mc)
        block = rearrange(block, "n (c p) m r q -> n c (m r) (q p)", c=self.channels)
        y0, x0 = m0 * rows.period, n0 * cols.period
        return block[..., top - y0 : bottom - y0, left - x0 : right - x0]
