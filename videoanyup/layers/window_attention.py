"""RGB-guided local-window cross-attention from LR feature cells to HR queries (DESIGN.md §5.3–5.4).

Every HR pixel (query) attends to a window of `window × window` LR cells centred on its nearest LR cell
(`functional.grid.axis_phases(...).nearest`). The window has a fixed size in LR cells, whatever the token
count. Cells of a window that fall outside the frame are masked with an additive −inf bias; the window
is neither shrunk nor shifted, and its centre is always inside, so no query is left without keys.

HR queries that share a nearest LR cell share a window. The layer groups them: along each axis the HR
positions with nearest LR index i form a contiguous run, so the queries of cell (i, j) are a rectangle
of HR pixels. Keys and raw values are gathered once per LR cell (`(cells, window², ·)`), and attention
runs with batch = LR cells, queries = that cell's HR pixels (padded to the longest run when the scale is
not an integer), keys = the window. Nothing of size (H·W × h·w) or (H·W × window² × C) is ever built;
cells are processed in chunks of at most `query_tile` HR queries, so working memory grows with
`query_tile × window²` and the output, not with the token count.

The per-head probabilities (plus the hyper-kernel logit prior) are averaged over heads and multiply the
raw LR feature vectors: every output vector is a convex combination of its window's input vectors.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from videoanyup.functional.grid import axis_phases
from videoanyup.layers.attention_backend import attention_probabilities, check_backend
from videoanyup.layers.hyper_kernel import HyperKernel
from videoanyup.layers.temporal_candidates import NeighbourCandidates, gather_bilinear, outside_extent

DEFAULT_QUERY_TILE = 1 << 14
PRIOR_CLASS_LIMIT = 1 << 24
PRIOR_CLASS_CALLS = 4096


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
class WindowPlan:
    """The content-independent part of window attention on one grid (see `WindowAttention.plan`).

    Attributes:
        lr_size, hr_size: the grid.
        rows, cols: runs of HR positions per LR index.
        index: `(h·w, window²)` flat LR index of each window cell (h·w for cells outside the frame).
        mask: `(h·w, window²)` 0, or −inf for window cells outside the frame.
        classes: the logit prior per class of cells, or None (no prior, or read per block).
    """

    lr_size: tuple[int, int]
    hr_size: tuple[int, int]
    rows: AxisRuns
    cols: AxisRuns
    index: Tensor
    mask: Tensor
    classes: tuple | None


class WindowAttention(nn.Module):
    """Convex window attention: HR queries from the guidance, LR keys, raw LR features as values.

    Args:
        query_channels: channels of the HR guidance features.
        key_channels: channels of the LR key features.
        heads: attention heads (their probabilities are averaged).
        head_dim: query/key width per head.
        window: side of the LR window, odd.
        prior: whether to add the hyper-kernel logit prior over (scale, HR phase, window offset).
        prior_options: options of `HyperKernel` (frequencies, group_dim, hidden, depth).
        backend: "sdpa" (default), "math" or "xformers" (CUDA), see `attention_backend`.
    """

    def __init__(
        self,
        query_channels: int,
        key_channels: int,
        *,
        heads: int = 4,
        head_dim: int = 16,
        window: int = 7,
        prior: bool = True,
        prior_options: dict | None = None,
        backend: str = "sdpa",
    ) -> None:
        super().__init__()
        if window < 1 or window % 2 != 1:
            raise ValueError(f"window must be an odd number >= 1, got {window}")
        self.heads, self.head_dim, self.window = heads, head_dim, window
        self.backend = check_backend(backend)
        self.query = nn.Conv2d(query_channels, heads * head_dim, 1)
        self.key = nn.Conv2d(key_channels, heads * head_dim, 1)
        self.prior = HyperKernel(heads, window_offsets(window), **(prior_options or {})) if prior else None

    def plan(self, lr_size: tuple[int, int], hr_size: tuple[int, int], device) -> "WindowPlan":
        """Everything about a grid that does not depend on the content: runs, windows, the logit prior.

        Compute it once per clip and pass it to every `forward` on that grid (`VideoAnyUp` does).
        """
        lr_size, hr_size = (int(lr_size[0]), int(lr_size[1])), (int(hr_size[0]), int(hr_size[1]))
        rows, cols = axis_runs(lr_size[0], hr_size[0]), axis_runs(lr_size[1], hr_size[1])
        index, valid = window_neighbours(lr_size[0], lr_size[1], self.window)
        mask = torch.zeros(valid.shape, device=device).masked_fill(~valid.to(device), float("-inf"))
        classes = self.prior_classes(lr_size, hr_size, rows, cols)
        return WindowPlan(lr_size, hr_size, rows, cols, index.to(device), mask, classes)

    def prior_classes(self, lr_size: tuple[int, int], hr_size: tuple[int, int], rows: AxisRuns, cols: AxisRuns):
        """The logit prior grouped by classes of LR cells with the same HR phases in every slot.

        Along an axis, the phases of a run's slots repeat from run to run (at an integer scale every run
        has the same phases), so a few classes of runs cover the grid; the prior of a class is read from
        `HyperKernel` on one representative cell. Returns `(table (Kr·Kc, heads, R·S, window²),
        row class (h,), column class (w,), Kc)`, or None when there would be more than
        `PRIOR_CLASS_LIMIT` values or `PRIOR_CLASS_CALLS` classes (then the prior is read per block).
        """
        if self.prior is None:
            return None
        row_period = axis_phases(lr_size[0], hr_size[0], 0, 0).period
        col_period = axis_phases(lr_size[1], hr_size[1], 0, 0).period
        row_patterns, row_class = torch.unique(rows.slots.clamp_min(0) % row_period, dim=0, return_inverse=True)
        col_patterns, col_class = torch.unique(cols.slots.clamp_min(0) % col_period, dim=0, return_inverse=True)
        kr, kc = row_patterns.shape[0], col_patterns.shape[0]
        if kr * kc * rows.longest * cols.longest * len(window_offsets(self.window)) * self.heads > PRIOR_CLASS_LIMIT:
            return None
        if kr * kc > PRIOR_CLASS_CALLS:
            return None
        row_first = [int((row_class == i).nonzero()[0]) for i in range(kr)]  # a representative LR row per class
        col_first = [int((col_class == j).nonzero()[0]) for j in range(kc)]
        classes = []
        for i in row_first:
            for j in col_first:
                region = (int(rows.start[i]), int(rows.start[i + 1]), int(cols.start[j]), int(cols.start[j + 1]))
                if region[1] <= region[0] or region[3] <= region[2]:  # an empty run: nothing to predict
                    classes.append(None)
                    continue
                prior = self.prior(lr_size, hr_size, region)  # (window², heads, count_i, count_j)
                prior = _pad_run(_pad_run(prior, rows.longest, 2), cols.longest, 3)  # (window², heads, R, S)
                classes.append(rearrange(prior, "o e r s -> e (r s) o"))
        filler = next(c for c in classes if c is not None)
        table = torch.stack([filler if c is None else c for c in classes])  # (Kr·Kc, heads, R·S, window²)
        return table.contiguous(), row_class, col_class, kc

    def forward(
        self,
        guidance: Tensor,
        key_feats: Tensor,
        values: Tensor,
        *,
        query_tile: int | None = None,
        out: Tensor | None = None,
        plan: "WindowPlan | None" = None,
        neighbours: NeighbourCandidates | None = None,
    ) -> Tensor:
        """Upsample `values` to the guidance's grid.

        Args:
            guidance: `(N, Cq, H, W)` HR guidance features; the output grid is (H, W).
            key_feats: `(N, Ck, h, w)` LR key features.
            values: `(N, C, h, w)` raw LR feature vectors (any C).
            query_tile: the most HR queries processed at once (memory bound; result does not depend on it).
            out: optional `(N, C, H, W)` tensor to write into (e.g. a slice of a larger output).
            plan: `self.plan(...)` for this grid, to reuse across calls (made here when None).
            neighbours: candidates from neighbouring frames (`TemporalCandidates`); their values must have
                the channels of `values`. One softmax spans the own window and every neighbour window.
        Returns:
            `(N, C, H, W)`: at each HR pixel a convex combination of the values in its window (and in its
            neighbour windows).
        """
        n, c, h, w = values.shape
        hr_size = (int(guidance.shape[-2]), int(guidance.shape[-1]))
        if plan is None:
            plan = self.plan((h, w), hr_size, values.device)
        elif plan.lr_size != (h, w) or plan.hr_size != hr_size:
            raise ValueError(f"plan is for {plan.lr_size} → {plan.hr_size}, the inputs are {(h, w)} → {hr_size}")
        if out is None:
            out = values.new_empty(n, c, *hr_size)
        tile = DEFAULT_QUERY_TILE if query_tile is None else query_tile
        if isinstance(tile, bool) or not isinstance(tile, int) or tile < 1:
            raise ValueError(f"query_tile must be a positive integer, got {query_tile!r}")

        keys = self.key(key_feats.to(self.key.weight.dtype))  # (N, heads·d, h, w)
        keys_flat = torch.cat(
            [rearrange(keys, "n e h w -> n (h w) e"), keys.new_zeros(n, 1, keys.shape[1])], dim=1
        )  # (N, h·w + 1, heads·d), the last row stands for cells outside the frame
        values_flat = torch.cat([rearrange(values, "n c h w -> n (h w) c"), values.new_zeros(n, 1, c)], dim=1)
        tables = None
        if neighbours is not None:
            if neighbours.values.shape[1:] != values.shape[1:] or neighbours.frame.shape[0] != n:
                raise ValueError(
                    f"neighbours: values {tuple(neighbours.values.shape)} must be (Nc, C, h, w) like values "
                    f"{tuple(values.shape)}, and frame {tuple(neighbours.frame.shape)} must be (N = {n}, D)"
                )
            other_keys = self.key(neighbours.keys.to(self.key.weight.dtype))  # (Nc, heads·d, h, w)
            tables = (
                rearrange(other_keys, "n e h w -> (n h w) e"),  # (Nc·h·w, heads·d)
                rearrange(neighbours.values, "n c h w -> (n h w) c"),  # (Nc·h·w, C)
                neighbours,
            )

        per_cell = plan.rows.longest * plan.cols.longest
        cells = max(1, tile // (per_cell * n))
        block_rows, block_cols = (max(1, cells // w), w) if cells >= w else (1, cells)
        for i0 in range(0, h, block_rows):
            i1 = min(h, i0 + block_rows)
            for j0 in range(0, w, block_cols):
                self._block(
                    guidance, keys_flat, values_flat, plan, (i0, i1, j0, min(w, j0 + block_cols)), out, tables
                )
        return out

    def _block_prior(self, plan: "WindowPlan", block: tuple[int, int, int, int], device) -> Tensor:
        """The logit prior of a block of cells: `(cells or 1, heads, R·S, window²)`."""
        i0, i1, j0, j1 = block
        classes, rows, cols, lr_size, hr_size = plan.classes, plan.rows, plan.cols, plan.lr_size, plan.hr_size
        if classes is not None:
            table, row_class, col_class, col_classes = classes
            rc, cc = row_class[i0:i1], col_class[j0:j1]
            if bool((rc == rc[0]).all()) and bool((cc == cc[0]).all()):  # one class: broadcast, no copy
                return table[int(rc[0]) * col_classes + int(cc[0])][None]  # (1, heads, R·S, window²)
            flat = (rc[:, None] * col_classes + cc[None, :]).reshape(-1).to(device)  # (cells,)
            return table.index_select(0, flat)  # (cells, heads, R·S, window²)
        top, bottom = int(rows.start[i0]), int(rows.start[i1])
        left, right = int(cols.start[j0]), int(cols.start[j1])
        prior = self.prior(lr_size, hr_size, (top, bottom, left, right))  # (window², heads, th, tw)
        row_local = (rows.slots[i0:i1] - top).clamp_min(0).reshape(-1).to(device)
        col_local = (cols.slots[j0:j1] - left).clamp_min(0).reshape(-1).to(device)
        prior = prior.index_select(2, row_local).index_select(3, col_local)  # (o, heads, hb·R, wb·S)
        return rearrange(prior, "o e (hb r) (wb s) -> (hb wb) e (r s) o", hb=i1 - i0, wb=j1 - j0)

    def _block(
        self,
        guidance: Tensor,
        keys_flat: Tensor,
        values_flat: Tensor,
        plan: "WindowPlan",
        block: tuple[int, int, int, int],
        out: Tensor,
        tables: tuple[Tensor, Tensor, NeighbourCandidates] | None = None,
    ) -> None:
        """Attention for the LR cells `[i0, i1) × [j0, j1)` and the HR rectangle they own.

        `tables`: flat neighbour keys `(Nc·h·w, heads·d)` and values `(Nc·h·w, C)` and the candidates.
        """
        i0, i1, j0, j1 = block
        rows, cols, lr_size = plan.rows, plan.cols, plan.lr_size
        hb, wb = i1 - i0, j1 - j0
        r, s = rows.longest, cols.longest
        top, bottom = int(rows.start[i0]), int(rows.start[i1])
        left, right = int(cols.start[j0]), int(cols.start[j1])
        if bottom <= top or right <= left:
            return  # these cells own no HR pixel (output smaller than the grid)
        n, device = guidance.shape[0], guidance.device
        row_slots, col_slots = rows.slots[i0:i1], cols.slots[j0:j1]  # (hb, R), (wb, S)
        padded_rows, padded_cols = row_slots.numel() != bottom - top, col_slots.numel() != right - left

        region = guidance[:, :, top:bottom, left:right].to(self.query.weight.dtype)  # (N, Cq, th, tw)
        if padded_rows:  # repeat a real row in the padding slots; their outputs are dropped below
            region = region.index_select(2, (row_slots - top).clamp_min(0).reshape(-1).to(device))
        if padded_cols:
            region = region.index_select(3, (col_slots - left).clamp_min(0).reshape(-1).to(device))
        region = rearrange(region, "n c (hb r) (wb s) -> n (hb wb) (r s) c", hb=hb, wb=wb)  # (N, cells, R·S, Cq)
        q = F.linear(region, self.query.weight.flatten(1), self.query.bias)  # (N, cells, R·S, heads·d)
        q = rearrange(q, "n m l (e d) -> n m e l d", e=self.heads)  # (N, cells, heads, R·S, d)

        cell_ids = (
            torch.arange(i0, i1, device=device)[:, None] * lr_size[1] + torch.arange(j0, j1, device=device)[None, :]
        ).reshape(-1)  # (cells,)
        neighbours = plan.index.index_select(0, cell_ids)  # (cells, window²)
        k = keys_flat[:, neighbours]  # (N, cells, window², heads·d)
        k = rearrange(k, "n m o (e d) -> n m e o d", e=self.heads)  # (N, cells, heads, window², d)
        v = values_flat[:, neighbours]  # (N, cells, window², C), gathered once per cell

        bias = plan.mask.index_select(0, cell_ids)[:, None, None, :].to(keys_flat.dtype)  # (cells, 1, 1, window²)
        if self.prior is not None:
            prior = self._block_prior(plan, block, device)
            bias = bias + prior.to(q.dtype)  # (cells, heads, R·S, window²)

        bias = bias[None]  # (1, cells or 1, heads or 1, R·S or 1, window²)
        if tables is not None:
            k, v, bias = self._with_neighbours(k, v, bias, tables, cell_ids, lr_size, q.shape[-2])
        probs = attention_probabilities(q, k, bias, backend=self.backend)  # (N, cells, heads, R·S, candidates)
        weights = probs.mean(dim=2).to(v.dtype)  # (N, cells, R·S, window²)
        # The product is taken transposed, (C × window²)(window² × R·S), so the result's last axis runs
        # along HR columns like the output's and the copy into the output moves contiguous runs.
        mixed = torch.matmul(v.transpose(-1, -2), weights.transpose(-1, -2))  # (N, cells, C, R·S)
        mixed = mixed.view(n, hb, wb, -1, r, s).permute(0, 3, 1, 4, 2, 5)  # (N, C, hb, R, wb, S), a view
        target = out[:, :, top:bottom, left:right]
        if not (padded_rows or padded_cols):
            target.unflatten(3, (wb, s)).unflatten(2, (hb, r)).copy_(mixed)
            return
        mixed = mixed.reshape(n, -1, hb * r, wb * s)  # (N, C, hb·R, wb·S)
        if padded_rows:  # drop the padding slots (non-integer scales)
            mixed = mixed.index_select(2, (row_slots.reshape(-1) >= 0).nonzero().squeeze(1).to(device))
        if padded_cols:
            mixed = mixed.index_select(3, (col_slots.reshape(-1) >= 0).nonzero().squeeze(1).to(device))
        target.copy_(mixed)

    def _with_neighbours(
        self,
        k: Tensor,
        v: Tensor,
        bias: Tensor,
        tables: tuple[Tensor, Tensor, NeighbourCandidates],
        cell_ids: Tensor,
        lr_size: tuple[int, int],
        queries: int,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Append the neighbour-frame candidates of a block of cells to its own window.

        Args:
            k: `(N, cells, heads, window², d)`; v: `(N, cells, window², C)`; bias: broadcastable to
                `(N, cells, heads, R·S, window²)`; cell_ids: `(cells,)` flat LR index; queries: R·S.
        Returns:
            k `(N, cells, heads, L, d)`, v `(N, cells, L, C)`, bias `(N, cells, heads, R·S, L)` with
            L = window² + D·K, the neighbour candidates read bilinearly once per cell.
        """
        key_table, value_table, nb = tables
        n, cells = k.shape[:2]
        d, kk = nb.frame.shape[1], nb.cells.shape[0]
        centre = nb.centre.flatten(3).index_select(3, cell_ids)  # (N, D, 2, cells)
        position = centre.permute(0, 3, 1, 2)[:, :, :, None, :] + nb.cells  # (N, cells, D, K, 2)
        kt = gather_bilinear(key_table, nb.key_frame[:, None, :, None], position, lr_size)  # (N, cells, D, K, heads·d)
        vt = gather_bilinear(value_table, nb.frame[:, None, :, None], position, lr_size)  # (N, cells, D, K, C)
        kt = rearrange(kt, "n m f o (e d) -> n m e (f o) d", e=self.heads)  # (N, cells, heads, D·K, d)
        vt = rearrange(vt, "n m f o c -> n m (f o) c")  # (N, cells, D·K, C)
        outside = outside_extent(position, lr_size)  # (N, cells, D, K)
        extra = nb.bias.permute(0, 2, 1, 3).reshape(n, 1, -1, 1, d * kk)  # (N, 1, heads, 1, D·K)
        extra = extra.masked_fill(outside.reshape(n, cells, 1, 1, d * kk), float("-inf"))  # (N, cells, heads, 1, D·K)
        heads = k.shape[2]
        own = bias.expand(n, cells, heads, queries, bias.shape[-1])
        extra = extra.to(own.dtype).expand(n, cells, heads, queries, d * kk)
        return (
            torch.cat([k, kt.to(k.dtype)], dim=3),
            torch.cat([v, vt.to(v.dtype)], dim=2),
            torch.cat([own, extra], dim=-1),
        )
