"""Attention candidates from aligned neighbouring frames (DESIGN.md §5.5, spatio-temporal convex attention).

An HR query of frame t attends to its `window × window` LR window in frame t (`WindowAttention`) and,
through this module, to a small `side × side` window of each neighbour s = t + Δ's **own cells**, around
where the flow t→s carries the query's LR cell (the target rounded to a cell). For |Δ| ≥ 2 the flow is
composed from the one-step flows and refined by learned offsets (the second-order step of BasicAVSR, applied
to where the candidates are read); the offset head is zero-initialised, so an untrained module reads exactly
where the composed flow points.

A candidate's value is one of frame s's raw LR feature vectors, read whole, so the attention output stays a
convex combination of input vectors. Carried back into frame t, the candidate at window offset o sits at
c + o − ρ (ρ: the target's rounding residual), between frame t's cells wherever the motion is not a whole
number of cells — the new samples multi-frame super-resolution lives on. A learned bias of the displacement
from the HR query to that position (`DisplacementBias`, per axis, per head, by |Δ|) lets each query prefer the
samples nearest to it, as the hyper-kernel prior does in frame t's own window. Positions are clamped to the
frame for reading, and a candidate whose position lies outside the frame's extent (more than half a cell past
the border) is masked out, so the border is not counted twice. Its key is frame s's key map read at the same
cell. A learned logit bias per (Δ, head, window cell) joins the hyper-kernel prior of frame t's own window, a
per-cell bias of each neighbour (`AgreementBias`, with log p of the shot test added) moves weight between
frames, and one softmax spans every candidate of every frame.

Neighbours by mode: `bidirectional` t−r…t+r (r = `reach`); `unidirectional` t−r…t−1 (causal); `lookahead`
t−r…t−1 and t+1…t+k; `perframe` none. A neighbour outside the clip is masked out (never mirrored: a
mirrored duplicate would count one frame twice). Where each candidate reads (`cell_rows`) is worked out once
per call for every cell; the reads themselves happen per LR cell, inside each attention block, so the memory
grows with the block's cells × candidates, not with the output.
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
        displacement: the `DisplacementBias` of the candidates.
        distance: `(D,)` |Δ| of each neighbour (read by `displacement`).
        cell_bias: `(N, D, heads, h, w)` logit bias of all of neighbour d's candidates read by the queries of
            each cell (`AgreementBias` plus log p of the shot test).
    """

    keys: Tensor
    values: Tensor
    frame: Tensor
    key_frame: Tensor
    centre: Tensor
    bias: Tensor
    cells: Tensor
    displacement: "DisplacementBias"
    distance: Tensor
    cell_bias: Tensor


def cell_rows(frame: Tensor, position: Tensor, lr_size: tuple[int, int]) -> Tensor:
    """`(...)` int64 row `f·h·w + y·w + x` of a flat per-frame table for whole-cell positions `(..., 2)` (x, y)
    (clamped to the frame); `frame` `(...)` broadcastable to `position[..., 0]`."""
    h, w = lr_size
    x = position[..., 0].clamp(0, w - 1).long()
    y = position[..., 1].clamp(0, h - 1).long()
    return frame.expand_as(x) * (h * w) + y * w + x


class TemporalCandidates(nn.Module):
    """Where the neighbour windows sit, and their logit bias.

    Args:
        code_channels: S, the frame codes the offset head reads (normalised features and guidance only).
        heads: attention heads (the bias is per head).
        side: side of each neighbour window, odd.
        max_delta: the largest |Δ| any mode reads (the bias table covers −max_delta … max_delta).
        hidden: width of the offset head, the displacement bias and the agreement bias.
    """

    def __init__(
        self,
        code_channels: int,
        *,
        heads: int,
        side: int = 3,
        max_delta: int = 2,
        hidden: int = 16,
    ) -> None:
        super().__init__()
        if side < 1 or side % 2 != 1:
            raise ValueError(f"side must be an odd number >= 1, got {side}")
        self.side, self.max_delta = side, max_delta
        self.displacement = DisplacementBias(heads, hidden)
        self.agreement = AgreementBias(heads, hidden)
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
        cell_bias: Tensor,
    ) -> NeighbourCandidates:
        """Bundle the tables and positions for `WindowAttention` (see `NeighbourCandidates`)."""
        distance = torch.tensor([abs(d) for d in deltas], dtype=centre.dtype, device=centre.device)
        return NeighbourCandidates(
            keys, values, frame, key_frame, centre, self.bias(deltas, present).to(keys.dtype),
            self.cells.to(centre.dtype), self.displacement, distance, cell_bias.to(keys.dtype),
        )


def outside_extent(position: Tensor, lr_size: tuple[int, int]) -> Tensor:
    """`(...)` bool: `(..., 2)` (x, y) positions more than half a cell outside an (h, w) frame."""
    h, w = lr_size
    x, y = position[..., 0], position[..., 1]
    return (x < -0.5) | (x > w - 0.5) | (y < -0.5) | (y > h - 0.5)

