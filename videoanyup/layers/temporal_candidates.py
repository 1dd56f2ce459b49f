"""Attention candidates from aligned neighbouring frames (DESIGN.md §5.5, spatio-temporal convex attention).

An HR query of frame t attends to its `window × window` LR window in frame t (`WindowAttention`) and,
through this module, to a small `side × side` window in each neighbour s = t + Δ, centred where the flow
t→s carries the query's LR cell. For |Δ| ≥ 2 the flow is composed from the one-step flows and refined by
learned offsets (the second-order step of BasicAVSR, applied to where the candidates are read); the
offset head is zero-initialised, so an untrained module reads exactly where the composed flow points.

A candidate's value is frame s's raw LR feature vector, read bilinearly at the candidate's (fractional)
position: a convex combination of four input vectors, so the attention output stays convex (`reads =
"bilinear"`). That resamples frame s onto frame t's own cell grid: the candidates then sit where frame t's
cells sit, and carry no sample that frame t lacks. With `reads = "cells"` the window is snapped to frame s's
own cells instead (the centre rounded): every candidate is one of frame s's vectors, unmixed, and its
position carried back into frame t, c + o − ρ (ρ: the centre's rounding residual), falls between frame t's
cells wherever the motion is not a whole number of cells — the new samples multi-frame super-resolution
lives on. A learned bias of the displacement from the HR query to that position (`DisplacementBias`, per
axis, per head, by |Δ|) lets each query prefer the samples nearest to it, as the hyper-kernel prior does in
frame t's own window. Positions are
clamped to the frame for reading, and a candidate whose position lies outside the frame's extent (more
than half a cell past the border) is masked out, so the border is not counted twice. Its key is frame s's
key map read at the same position. A learned logit bias per (Δ, head, window cell) joins the hyper-kernel
prior of frame t's own window, and one softmax spans every candidate of every frame.

Neighbours by mode: `bidirectional` t−r…t+r (r = `reach`); `unidirectional` t−r…t−1 (causal); `lookahead`
t−r…t−1 and t+1…t+k; `perframe` none. A neighbour outside the clip is masked out (never mirrored: a
mirrored duplicate would count one frame twice). Where each candidate reads (`bilinear_taps`) is worked
out once per call for every cell; the reads themselves (`lerp_taps`) happen per LR cell, inside each
attention block, so the memory grows with the block's cells × candidates, not with the output.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from videoanyup.functional.warp import base_grid, flow_warp
from videoanyup.layers.agreement_bias import AgreementBias

OFFSET_LIMIT = 2.0  # learned offsets move a neighbour window by at most this many LR cells


def neighbour_deltas(mode: str, *, reach: int, lookahead: int) -> tuple[int, ...]:
    """The temporal offsets Δ = s − t of the neighbours a mode reads, in order."""
    past = tuple(range(-reach, 0))
    if mode == "bidirectional":
        return past + tuple(range(1, reach + 1))
    if mode == "unidirectional":
        return past
    if mode == "lookahead":
        return past + tuple(range(1, lookahead + 1))
    if mode == "perframe":
        return ()
    raise ValueError(f"mode must be bidirectional, unidirectional, lookahead or perframe, got {mode!r}")


def window_cells(side: int) -> Tensor:
    """`(side², 2)` float (x, y) offsets of a `side × side` window, row-major, centre at index side²//2."""
    r = side // 2
    return torch.tensor([(dx, dy) for dy in range(-r, r + 1) for dx in range(-r, r + 1)], dtype=torch.float32)


class DisplacementBias(nn.Module):
    """Logit bias of a neighbour candidate from its displacement to the HR query, one axis at a time.

    b(δ) = g(δy, |Δ|) + g(δx, |Δ|) with g a small MLP to one value per head; the sum of two one-dimensional
    terms keeps the cost at (queries along an axis × candidates), and a separable Gaussian is one of the
    shapes it can take. The last layer is zero-initialised: an untrained bias is 0.

    Args:
        heads: attention heads; hidden: width of the MLP.
    """

    def __init__(self, heads: int, hidden: int = 16) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(2, hidden), nn.LeakyReLU(0.1), nn.Linear(hidden, hidden), nn.LeakyReLU(0.1), nn.Linear(hidden, heads))
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, displacement: Tensor, delta: Tensor) -> Tensor:
        """`(..., heads)` bias of displacements `(...)` (LR cells, one axis) at temporal distances |Δ|
        broadcastable to it."""
        x = torch.stack([displacement, delta.to(displacement.dtype).expand_as(displacement) / 2], dim=-1)
        return self.net(x.to(self.net[0].weight.dtype))


@dataclass
class NeighbourCandidates:
    """What `WindowAttention` needs to add neighbour-frame candidates to the windows of N output frames.

    Attributes:
        keys: `(Nc, Ck, h, w)` key features of the frames candidates are read from.
        values: `(Nc, C, h, w)` their raw LR feature vectors.
        frame: `(N, D)` int64, the row of `values` of neighbour d of output frame n.
        key_frame: `(N, D)` int64, its row of `keys` (look-ahead reads future keys from another table).
        centre: `(N, D, 2, h, w)` (x, y) LR pixel position in that frame of the window centre of each cell.
        bias: `(N, D, heads, K)` logit bias of each candidate (−inf: a neighbour outside the clip).
        cells: `(K, 2)` float (x, y) offsets of the K = side² window cells.
        snap: read frame s's own cells (the centre rounded) instead of bilinear reads at the centre.
        displacement: the `DisplacementBias` of the candidates, or None (no query-dependent bias).
        distance: `(D,)` |Δ| of each neighbour (read by `displacement`).
        cell_bias: `(N, D, heads, h, w)` logit bias of all of neighbour d's candidates read by the queries of
            each cell (`AgreementBias`), or None.
    """

    keys: Tensor
    values: Tensor
    frame: Tensor
    key_frame: Tensor
    centre: Tensor
    bias: Tensor
    cells: Tensor
    snap: bool = False
    displacement: "DisplacementBias | None" = None
    distance: Tensor | None = None
    cell_bias: Tensor | None = None

    def narrow(self, start: int, length: int) -> "NeighbourCandidates":
        """The candidates of output frames `start … start + length − 1` (the tables are shared)."""
        return NeighbourCandidates(
            self.keys, self.values, self.frame[start : start + length], self.key_frame[start : start + length],
            self.centre[start : start + length], self.bias[start : start + length], self.cells,
            self.snap, self.displacement, self.distance,
            None if self.cell_bias is None else self.cell_bias[start : start + length],
        )


def bilinear_taps(frame: Tensor, position: Tensor, lr_size: tuple[int, int]) -> tuple[Tensor, Tensor, Tensor]:
    """Where a bilinear read of a flat per-frame table takes its four rows, and with what weights.

    Args:
        frame: `(...)` int64 frame of each read, broadcastable to `position[..., 0]`.
        position: `(..., 2)` (x, y) LR pixel positions (clamped to the frame).
        lr_size: (h, w).
    Returns:
        rows `(..., 4)` int64 (row `f·h·w + y·w + x` of the corners (y0, x0), (y0, x1), (y1, x0), (y1, x1)),
        fx `(..., 1)` and fy `(..., 1)` fractional parts, in the dtype of `position`.
    """
    h, w = lr_size
    x = position[..., 0].clamp(0, w - 1)
    y = position[..., 1].clamp(0, h - 1)
    x0, y0 = x.floor(), y.floor()
    fx, fy = (x - x0).unsqueeze(-1), (y - y0).unsqueeze(-1)
    x0, y0 = x0.long(), y0.long()
    x1, y1 = (x0 + 1).clamp_max(w - 1), (y0 + 1).clamp_max(h - 1)
    base = frame.expand_as(x0) * (h * w)
    rows = torch.stack([base + y0 * w + x0, base + y0 * w + x1, base + y1 * w + x0, base + y1 * w + x1], dim=-1)
    return rows, fx, fy


def nearest_taps(frame: Tensor, position: Tensor, lr_size: tuple[int, int]) -> Tensor:
    """`(..., 1)` int64 row `f·h·w + y·w + x` of whole-cell positions `(..., 2)` (x, y) (clamped to the frame)."""
    h, w = lr_size
    x = position[..., 0].clamp(0, w - 1).long()
    y = position[..., 1].clamp(0, h - 1).long()
    return (frame.expand_as(x) * (h * w) + y * w + x).unsqueeze(-1)


def lerp_taps(table: Tensor, rows: Tensor, fx: Tensor | None, fy: Tensor | None) -> Tensor:
    """Bilinear reads of `table` `(Nc·h·w, E)` at taps from `bilinear_taps` → `(..., E)`: one gather, three lerps.
    With `fx` None, `rows` `(..., 1)` are whole cells (`nearest_taps`): one gather."""
    if fx is None:
        return table.index_select(0, rows.reshape(-1)).view(*rows.shape[:-1], table.shape[-1])
    corners = table.index_select(0, rows.reshape(-1)).view(*rows.shape, table.shape[-1])  # (..., 4, E)
    fx, fy = fx.to(table.dtype), fy.to(table.dtype)
    top = torch.lerp(corners[..., 0, :], corners[..., 1, :], fx)
    bottom = torch.lerp(corners[..., 2, :], corners[..., 3, :], fx)
    return torch.lerp(top, bottom, fy)


def gather_bilinear(table: Tensor, frame: Tensor, position: Tensor, lr_size: tuple[int, int]) -> Tensor:
    """Read rows of a flat per-frame table bilinearly at fractional LR positions (clamped to the frame).

    Args:
        table: `(Nc·h·w, E)` row `f·h·w + y·w + x` holds frame f's vector at cell (y, x).
        frame: `(...)` int64 frame of each read, broadcastable to `position[..., 0]`.
        position: `(..., 2)` (x, y) LR pixel positions.
        lr_size: (h, w).
    Returns:
        `(..., E)`: a convex combination of (at most) four rows per read.
    """
    return lerp_taps(table, *bilinear_taps(frame, position, lr_size))


class TemporalCandidates(nn.Module):
    """Where the neighbour windows sit, and their logit bias.

    Args:
        code_channels: S, the frame codes the offset head reads (normalised features and guidance only).
        heads: attention heads (the bias is per head).
        side: side of each neighbour window, odd.
        max_delta: the largest |Δ| any mode reads (the bias table covers −max_delta … max_delta).
        hidden: width of the offset head.
        reads: "bilinear" (read at the centre) or "cells" (frame s's own cells around the rounded centre).
        displacement_bias: add a learned bias of each candidate's displacement to the query (`DisplacementBias`).
        agreement_bias: add a learned per-cell bias of each neighbour from how frame t's code agrees with the
            neighbour's at the flow target (`AgreementBias`; `agreement` below).
    """

    def __init__(
        self,
        code_channels: int,
        *,
        heads: int,
        side: int = 3,
        max_delta: int = 2,
        hidden: int = 16,
        reads: str = "bilinear",
        displacement_bias: bool = False,
        agreement_bias: bool = False,
    ) -> None:
        super().__init__()
        if side < 1 or side % 2 != 1:
            raise ValueError(f"side must be an odd number >= 1, got {side}")
        if reads not in ("bilinear", "cells"):
            raise ValueError(f"reads must be 'bilinear' or 'cells', got {reads!r}")
        self.side, self.max_delta, self.snap = side, max_delta, reads == "cells"
        self.displacement = DisplacementBias(heads, hidden) if displacement_bias else None
        self.agreement = AgreementBias(heads, hidden) if agreement_bias else None
        self.register_buffer("cells", window_cells(side), persistent=False)
        self.delta_bias = nn.Parameter(torch.zeros(2 * max_delta + 1, heads, side * side))  # row Δ + max_delta
        self.offset = nn.Sequential(
            nn.Conv2d(2 * code_channels + 2, hidden, 3, padding=1),
            nn.LeakyReLU(0.1),
            nn.Conv2d(hidden, 2, 3, padding=1),
        )
        nn.init.zeros_(self.offset[-1].weight)
        nn.init.zeros_(self.offset[-1].bias)

    def centre(self, code: Tensor, neighbour_code: Tensor, flow: Tensor, delta: int) -> Tensor:
        """Window centres `(N, 2, h, w)`, (x, y) LR pixels in frame t + Δ, of the cells of frame t.

        Args:
            code: `(N, S, h, w)` code of frame t; neighbour_code: of frame t + Δ.
            flow: `(N, 2, h, w)` flow t → t + Δ (composed for |Δ| ≥ 2).
            delta: Δ; for |Δ| ≥ 2 the learned offsets refine the flow.
        """
        h, w = flow.shape[-2:]
        target = base_grid(h, w, like=flow) + flow  # (N, 2, h, w)
        if abs(delta) < 2:
            return target
        cue = torch.cat([code, flow_warp(neighbour_code, flow, padding_mode="border"), flow], dim=1)
        return target + OFFSET_LIMIT * torch.tanh(self.offset(cue))

    def bias(self, deltas: tuple[int, ...], present: Tensor) -> Tensor:
        """`(N, D, heads, K)` logit bias of the candidates; `present` `(N, D)` bool masks absent neighbours."""
        rows = torch.tensor([d + self.max_delta for d in deltas], device=present.device)
        bias = self.delta_bias.index_select(0, rows)[None]  # (1, D, heads, K)
        return bias.masked_fill(~present[:, :, None, None], float("-inf"))

    def candidates(
        self,
        keys: Tensor,
        values: Tensor,
        frame: Tensor,
        key_frame: Tensor,
        centre: Tensor,
        deltas: tuple[int, ...],
        present: Tensor,
        cell_bias: Tensor | None = None,
    ) -> NeighbourCandidates:
        """Bundle the tables and positions for `WindowAttention` (see `NeighbourCandidates`)."""
        distance = torch.tensor([abs(d) for d in deltas], dtype=centre.dtype, device=centre.device)
        return NeighbourCandidates(
            keys, values, frame, key_frame, centre, self.bias(deltas, present).to(keys.dtype),
            self.cells.to(centre.dtype), self.snap, self.displacement, distance,
            None if cell_bias is None else cell_bias.to(keys.dtype),
        )


def outside_extent(position: Tensor, lr_size: tuple[int, int]) -> Tensor:
    """`(...)` bool: `(..., 2)` (x, y) positions more than half a cell outside an (h, w) frame."""
    h, w = lr_size
    x, y = position[..., 0], position[..., 1]
    return (x < -0.5) | (x > w - 0.5) | (y < -0.5) | (y > h - 0.5)

