"""The content-independent geometry of window attention on one grid, made once (DESIGN.md §5.3).

Window attention groups the HR queries by their nearest LR cell (`axis_runs`), gathers each cell's
`window × window` neighbours once (`window_neighbours`), and attends a block of cells at a time so that at
most `query_tile` queries are in flight. Everything about those blocks that does not depend on the content
— which cells, which HR rectangle they own, the padding slots of non-integer scales and which slots are
real, the class of their logit prior — is an `AttentionBlock`, made here once per (grid, frames per call,
query tile) on the device. The per-frame path then only slices and gathers with ready tensors: no index
arithmetic, no host read of a tensor value (`int(t)`, `bool(t)`, `.nonzero()`), and a fixed sequence of
operations that `torch.compile` traces as one graph.

The cells of a block are always a contiguous range of flat LR indices (whole rows of cells, or a part of
one row), so the block's window indices, mask and neighbour reads are views, never gathers.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from videoanyup.functional.grid import axis_phases


@dataclass(frozen=True)
class AxisRuns:
    """How the HR positions of one axis group into runs that share a nearest LR index.

    Attributes:
        start: `(n + 1,)` int64, HR index where the run of LR index i starts (`start[n]` = HR length).
        count: `(n,)` int64, run lengths (0 only when the HR axis is shorter than the LR one).
        slots: `(n, R)` int64, HR index of slot r of run i, or −1 past the run's end; R = longest run.
    """

    start: Tensor
    count: Tensor
    slots: Tensor

    @property
    def longest(self) -> int:
        return self.slots.shape[1]


def axis_runs(lr_len: int, hr_len: int) -> AxisRuns:
    """Runs of HR positions per nearest LR index along one axis (CPU tensors)."""
    nearest = axis_phases(lr_len, hr_len).nearest.clamp(0, lr_len - 1)  # (H,), non-decreasing
    count = torch.bincount(nearest, minlength=lr_len)  # (h,)
    start = torch.zeros(lr_len + 1, dtype=torch.int64)
    start[1:] = torch.cumsum(count, 0)
    longest = max(1, int(count.max()))
    slot = torch.arange(longest)
    slots = start[:-1, None] + slot[None, :]  # (h, R)
    slots = torch.where(slot[None, :] < count[:, None], slots, torch.full_like(slots, -1))
    return AxisRuns(start=start, count=count, slots=slots)


def query_offsets(runs: AxisRuns, lr_len: int, hr_len: int) -> Tensor:
    """`(n, R)` float32: where each query slot of a run sits, in LR cells, relative to its run's LR index.

    The HR position's LR coordinate minus its nearest LR index, in [−0.5, 0.5); 0 for padding slots. It
    places a query against the neighbour candidates (`TemporalCandidates`' displacement bias).
    """
    offset = axis_phases(lr_len, hr_len).offset.to(torch.float32)  # (H,)
    return torch.where(runs.slots >= 0, offset[runs.slots.clamp_min(0)], torch.zeros(()))


def window_offsets(window: int) -> list[tuple[int, int]]:
    """The (dy, dx) offsets of a `window × window` window, row-major, centre at index window²//2."""
    radius = window // 2
    return [(dy, dx) for dy in range(-radius, radius + 1) for dx in range(-radius, radius + 1)]


def window_neighbours(h: int, w: int, window: int) -> tuple[Tensor, Tensor]:
    """Flat LR indices of each cell's window, and which of them lie inside the frame.

    Returns:
        `(h·w, window²)` int64 indices (h·w, one past the last cell, for cells outside), and
        `(h·w, window²)` bool validity.
    """
    offsets = torch.tensor(window_offsets(window), dtype=torch.int64)  # (window², 2)
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    ny = ys.reshape(-1, 1) + offsets[None, :, 0]  # (h·w, window²)
    nx = xs.reshape(-1, 1) + offsets[None, :, 1]
    valid = (ny >= 0) & (ny < h) & (nx >= 0) & (nx < w)
    index = torch.where(valid, ny * w + nx, torch.full_like(ny, h * w))
    return index, valid


def _pad_run(x: Tensor, length: int, dim: int) -> Tensor:
    """Pad `dim` to `length` by repeating its first entry (padding slots are computed, then dropped)."""
    missing = length - x.shape[dim]
    if missing == 0:
        return x
    return torch.cat([x, x.narrow(dim, 0, 1).expand(*[missing if d == dim else -1 for d in range(x.dim())])], dim=dim)


@dataclass(frozen=True)
class AttentionBlock:
    """A block of LR cells attended at once, with every index it needs made beforehand.

    Attributes:
        cells: `(c0, c1)`, the block's LR cells as a range of flat indices `y·w + x`.
        shape: `(hb, wb)`, its rows and columns of cells.
        region: `(top, bottom, left, right)`, the HR rectangle its cells own.
        row_slots: `(hb·R,)` int64 region-local HR row of each query slot (a padding slot repeats its run's
            first row), or None when no run of the block is shorter than R; col_slots: `(wb·S,)` likewise.
        row_keep: `(bottom − top,)` int64, the real slots among the hb·R (None: all); col_keep likewise.
        prior_class: the prior class of every cell (an int), or `(cells,)` int64 classes, or None (no table).
        prior_rows: `(hb·R,)`, prior_cols: `(wb·S,)` region-local HR indices of the slots, to read the prior per
            block when there is no class table (else None).
    """

    cells: tuple[int, int]
    shape: tuple[int, int]
    region: tuple[int, int, int, int]
    row_slots: Tensor | None
    col_slots: Tensor | None
    row_keep: Tensor | None
    col_keep: Tensor | None
    prior_class: int | Tensor | None
    prior_rows: Tensor | None = None
    prior_cols: Tensor | None = None


@dataclass(frozen=True)
class WindowPlan:
    """The content-independent part of window attention on one grid (see `WindowAttention.plan`).

    Attributes:
        lr_size, hr_size: the grid; device: where its tensors live.
        rows, cols: runs of HR positions per LR index (CPU).
        index: `(h·w, window²)` flat LR index of each window cell (h·w for cells outside the frame).
        mask: `(h·w, 1, 1, window²)` 0, or −inf for window cells outside the frame.
        classes: the logit prior per class of cells, or None (no prior, or read per block).
        query_offsets: `(h·w, R)` y and `(h·w, S)` x offsets of each cell's query slots from the cell, in LR
            cells (`query_offsets`), on the device.
        schedules: the blocks per (frames per call, query tile), made on first use (`blocks`).
    """

    lr_size: tuple[int, int]
    hr_size: tuple[int, int]
    device: torch.device
    rows: AxisRuns
    cols: AxisRuns
    index: Tensor
    mask: Tensor
    classes: tuple | None
    query_offsets: tuple[Tensor, Tensor] | None = None
    schedules: dict = field(default_factory=dict, compare=False, repr=False)

    def blocks(self, frames: int, query_tile: int, *, per_block_prior: bool) -> tuple[AttentionBlock, ...]:
        """The blocks that attend `frames` frames at once with at most `query_tile` queries each (cached).

        A block holds `max(1, query_tile // (R·S·frames))` cells: whole rows of cells when that is at least
        a row, else part of one row. Blocks whose cells own no HR pixel (output smaller than the grid) are
        left out. `per_block_prior`: keep the slot indices for reading the prior per block.
        """
        key = (frames, query_tile, per_block_prior)
        if key not in self.schedules:
            self.schedules[key] = self._make_blocks(frames, query_tile, per_block_prior)
        return self.schedules[key]

    def _make_blocks(self, frames: int, query_tile: int, per_block_prior: bool) -> tuple[AttentionBlock, ...]:
        h, w = self.lr_size
        rows, cols = self.rows, self.cols
        per_cell = rows.longest * cols.longest
        cells = max(1, query_tile // (per_cell * frames))
        block_rows, block_cols = (max(1, cells // w), w) if cells >= w else (1, cells)
        blocks = []
        for i0 in range(0, h, block_rows):
            i1 = min(h, i0 + block_rows)
            for j0 in range(0, w, block_cols):
                block = self._make_block(i0, i1, j0, min(w, j0 + block_cols), per_block_prior)
                if block is not None:
                    blocks.append(block)
        return tuple(blocks)

    def _make_block(self, i0: int, i1: int, j0: int, j1: int, per_block_prior: bool) -> AttentionBlock | None:
        rows, cols, device, w = self.rows, self.cols, self.device, self.lr_size[1]
        top, bottom = int(rows.start[i0]), int(rows.start[i1])
        left, right = int(cols.start[j0]), int(cols.start[j1])
        if bottom <= top or right <= left:
            return None  # these cells own no HR pixel

        def slots(runs: AxisRuns, a: int, b: int, first: int, length: int) -> tuple[Tensor | None, Tensor | None]:
            chosen = runs.slots[a:b]  # (cells of the axis, R)
            if chosen.numel() == length:
                return None, None
            local = (chosen - first).clamp_min(0).reshape(-1).to(device)  # padding slots read the run's first
            keep = (chosen.reshape(-1) >= 0).nonzero().squeeze(1).to(device)
            return local, keep

        row_slots, row_keep = slots(rows, i0, i1, top, bottom - top)
        col_slots, col_keep = slots(cols, j0, j1, left, right - left)
        prior_class, prior_rows, prior_cols = None, None, None
        if self.classes is not None:
            _, row_class, col_class, col_classes = self.classes
            rc, cc = row_class[i0:i1], col_class[j0:j1]
            if bool((rc == rc[0]).all()) and bool((cc == cc[0]).all()):  # one class: broadcast, no copy
                prior_class = int(rc[0]) * col_classes + int(cc[0])
            else:
                prior_class = (rc[:, None] * col_classes + cc[None, :]).reshape(-1).to(device)  # (cells,)
        elif per_block_prior:
            prior_rows = (rows.slots[i0:i1] - top).clamp_min(0).reshape(-1).to(device)
            prior_cols = (cols.slots[j0:j1] - left).clamp_min(0).reshape(-1).to(device)
        return AttentionBlock(
            cells=(i0 * w + j0, (i1 - 1) * w + j1),
            shape=(i1 - i0, j1 - j0),
            region=(top, bottom, left, right),
            row_slots=row_slots,
            col_slots=col_slots,
            row_keep=row_keep,
            col_keep=col_keep,
            prior_class=prior_class,
            prior_rows=prior_rows,
            prior_cols=prior_cols,
        )
