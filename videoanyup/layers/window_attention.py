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

Everything about the blocks that does not depend on the content is made once per grid and call shape
(`window_plan.WindowPlan.blocks`) and cached with the plan, and the neighbour candidates' read positions
once per call, so a frame runs a fixed sequence of tensor operations with no host read of a tensor value
(a GPU's launch queue never stalls, and `torch.compile` traces it as one graph).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from videoanyup.functional.grid import axis_phases
from videoanyup.layers.attention_backend import attention_probabilities, check_backend
from videoanyup.layers.hyper_kernel import HyperKernel, _version
from videoanyup.layers.temporal_candidates import NeighbourCandidates, cell_rows, outside_extent
from videoanyup.layers.window_plan import (  # noqa: F401  (axis_runs, window_neighbours: re-exported)
    AttentionBlock,
    AxisRuns,
    WindowPlan,
    _pad_run,
    axis_runs,
    query_offsets,
    window_neighbours,
    window_offsets,
)

DEFAULT_QUERY_TILE = 1 << 14  # CPU: larger blocks run slower here (cache), measured 0.92 s → 1.69 s at 1 << 16
ACCELERATOR_QUERY_TILE = 1 << 16  # CUDA & co: 4× fewer blocks, so 4× fewer launches; ~0.2–0.35 GB per block
PRIOR_CLASS_LIMIT = 1 << 24
PRIOR_CLASS_CALLS = 4096
PLAN_CACHE = 4  # grids whose plans are kept (inference): a video keeps its grid


def default_query_tile(device: torch.device) -> int:
    """HR queries per block when none is asked for: small on the CPU (cache-friendly), larger on an accelerator,
    where the count of kernel launches, not the arithmetic, sets the time. The result does not
    depend on it."""
    return DEFAULT_QUERY_TILE if torch.device(device).type == "cpu" else ACCELERATOR_QUERY_TILE


class WindowAttention(nn.Module):
    """Convex window attention: HR queries from the guidance, LR keys, raw LR features as values.

    Args:
        query_channels: channels of the HR guidance features.
        key_channels: channels of the LR key features.
        heads: attention heads (their probabilities are averaged).
        head_dim: query/key width per head.
        window: side of the LR window, odd.
        hyper_kernel: whether to add the hyper-kernel logit prior over (scale, HR phase, window offset) (the
            `prior` attribute; "prior" in this module always means it).
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
        hyper_kernel: bool = True,
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
        self.prior = HyperKernel(heads, window_offsets(window), **(prior_options or {})) if hyper_kernel else None
        self._plans: dict[tuple, WindowPlan] = {}

    def plan(self, lr_size: tuple[int, int], hr_size: tuple[int, int], device) -> WindowPlan:
        """Everything about a grid that does not depend on the content: runs, windows, the logit prior, and
        (made on first use) the blocks of every call shape.

        Cached per grid, device and weights of the prior whenever no gradient is recorded for the prior
        (like `HyperKernel`'s kernels), so a stream, or a second clip on the same grid, reuses the plan and
        its blocks; while training, a fresh plan per call keeps the prior's gradient.
        """
        lr_size, hr_size = (int(lr_size[0]), int(lr_size[1])), (int(hr_size[0]), int(hr_size[1]))
        device = torch.device(device)
        params = list(self.prior.parameters()) if self.prior is not None else []
        cache = not (torch.is_grad_enabled() and any(p.requires_grad for p in params))
        key = (lr_size, hr_size, str(device), PRIOR_CLASS_LIMIT, PRIOR_CLASS_CALLS, tuple((p.dtype, *_version(p)) for p in params))
        if cache and key in self._plans:
            return self._plans[key]
        rows, cols = axis_runs(lr_size[0], hr_size[0]), axis_runs(lr_size[1], hr_size[1])
        index, valid = window_neighbours(lr_size[0], lr_size[1], self.window)
        mask = torch.zeros(valid.shape, device=device).masked_fill(~valid.to(device), float("-inf"))
        classes = self.prior_classes(lr_size, hr_size, rows, cols)
        offsets_y = query_offsets(rows, lr_size[0], hr_size[0]).repeat_interleave(lr_size[1], dim=0)  # (h·w, R)
        offsets_x = query_offsets(cols, lr_size[1], hr_size[1]).repeat(lr_size[0], 1)  # (h·w, S)
        plan = WindowPlan(
            lr_size, hr_size, device, rows, cols, index.to(device), mask[:, None, None, :], classes,
            (offsets_y.to(device), offsets_x.to(device)),
        )
        if cache:
            while len(self._plans) >= PLAN_CACHE:
                self._plans.pop(next(iter(self._plans)))
            self._plans[key] = plan
        return plan

    def train(self, mode: bool = True) -> "WindowAttention":
        self._plans.clear()
        return super().train(mode)

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
        plan: WindowPlan | None = None,
        neighbours: NeighbourCandidates | None = None,
    ) -> Tensor:
        """Upsample `values` to the guidance's grid.

        Args:
            guidance: `(N, Cq, H, W)` HR guidance features; the output grid is (H, W).
            key_feats: `(N, Ck, h, w)` LR key features.
            values: `(N, C, h, w)` raw LR feature vectors (any C).
            query_tile: the most HR queries processed at once (memory bound; result does not depend on it);
                None: `default_query_tile(device)`.
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
        tile = default_query_tile(values.device) if query_tile is None else query_tile
        if isinstance(tile, bool) or not isinstance(tile, int) or tile < 1:
            raise ValueError(f"query_tile must be a positive integer, got {query_tile!r}")

        keys = self.key(key_feats.to(self.key.weight.dtype))  # (N, heads·d, h, w)
        keys_flat = torch.cat(
            [rearrange(keys, "n e h w -> n (h w) e"), keys.new_zeros(n, 1, keys.shape[1])], dim=1
        )  # (N, h·w + 1, heads·d), the last row stands for cells outside the frame
        values_flat = torch.cat([rearrange(values, "n c h w -> n (h w) c"), values.new_zeros(n, 1, c)], dim=1)
        reads = None
        if neighbours is not None:
            if neighbours.values.shape[1:] != values.shape[1:] or neighbours.frame.shape[0] != n:
                raise ValueError(
                    f"neighbours: values {tuple(neighbours.values.shape)} must be (Nc, C, h, w) like values "
                    f"{tuple(values.shape)}, and frame {tuple(neighbours.frame.shape)} must be (N = {n}, D)"
                )
            reads = self._neighbour_reads(neighbours, (h, w))
        per_block_prior = self.prior is not None and plan.classes is None
        for block in plan.blocks(n, tile, per_block_prior=per_block_prior):
            self._block(guidance, keys_flat, values_flat, plan, block, out, reads)
        return out

    def _neighbour_reads(self, nb: NeighbourCandidates, lr_size: tuple[int, int]) -> dict[str, Tensor]:
        """Where every cell reads its neighbour candidates, worked out once per call for all cells.

        Returns the flat key `(Nc·h·w, heads·d)` and value `(Nc·h·w, C)` tables, the rows of keys and values
        (`(h·w, N, D, K)`: cell-major, so a block's are a view), the candidates' logit bias
        `(N, h·w, heads, 1, D·K)` (−inf: outside the frame or the clip) and where each candidate sits relative
        to its cell (`_candidate_offsets`).
        """
        other_keys = self.key(nb.keys.to(self.key.weight.dtype))  # (Nc, heads·d, h, w)
        n, d, kk = nb.frame.shape[0], nb.frame.shape[1], nb.cells.shape[0]
        centre = nb.centre.flatten(3).permute(3, 0, 1, 2)  # (h·w, N, D, 2)
        rounded = centre.round()  # frame s's own cells: the window around the rounded centre
        residual = centre - rounded  # (h·w, N, D, 2), in [−0.5, 0.5]
        position = rounded[:, :, :, None, :] + nb.cells  # (h·w, N, D, K, 2)
        key_rows = cell_rows(nb.key_frame[None, :, :, None], position, lr_size)  # (h·w, N, D, K)
        value_rows = key_rows
        if nb.key_frame is not nb.frame:  # look-ahead: future keys come from another table
            value_rows = cell_rows(nb.frame[None, :, :, None], position, lr_size)
        outside = outside_extent(position, lr_size).permute(1, 0, 2, 3)  # (N, h·w, D, K)
        bias = nb.bias.permute(0, 2, 1, 3).reshape(n, 1, -1, 1, d * kk)  # (N, 1, heads, 1, D·K)
        per_cell = nb.cell_bias.flatten(3).permute(0, 3, 2, 1)  # (N, h·w, heads, D): one logit per (cell, head, neighbour)
        per_cell = per_cell[..., None].expand(*per_cell.shape, kk).reshape(n, per_cell.shape[1], -1, 1, d * kk)
        bias = bias + per_cell.to(bias.dtype)  # (N, h·w, heads, 1, D·K)
        bias = bias.masked_fill(outside.reshape(n, -1, 1, 1, d * kk), float("-inf"))  # (N, h·w, heads, 1, D·K)
        return {
            "keys": rearrange(other_keys, "n e h w -> (n h w) e"),  # (Nc·h·w, heads·d)
            "values": rearrange(nb.values, "n c h w -> (n h w) c"),  # (Nc·h·w, C)
            "key_rows": key_rows,
            "value_rows": value_rows,
            "bias": bias,
            "displacement": nb.displacement,
            "distance": nb.distance,
            "candidate_offset": self._candidate_offsets(nb, residual),
        }

    @staticmethod
    def _candidate_offsets(nb: NeighbourCandidates, residual: Tensor) -> Tensor:
        """`(N, h·w, D, 2, side)`: o − ρ per axis (x, y) — where each candidate sits, carried back into frame t,
        relative to its cell — worked out once per call; a block subtracts its queries' offsets φ."""
        side = round(nb.cells.shape[0] ** 0.5)
        offsets = torch.arange(side, device=nb.centre.device, dtype=nb.centre.dtype) - side // 2  # (side,)
        return offsets - residual.permute(1, 0, 2, 3)[..., None]  # (N, h·w, D, 2, side)

    def _block_prior(self, plan: WindowPlan, block: AttentionBlock) -> Tensor:
        """The logit prior of a block of cells: `(cells or 1, heads, R·S, window²)`."""
        if plan.classes is not None:
            table = plan.classes[0]  # (classes, heads, R·S, window²)
            if isinstance(block.prior_class, int):
                return table[block.prior_class][None]  # (1, heads, R·S, window²), a view
            return table.index_select(0, block.prior_class)  # (cells, heads, R·S, window²)
        hb, wb = block.shape
        prior = self.prior(plan.lr_size, plan.hr_size, block.region)  # (window², heads, th, tw)
        prior = prior.index_select(2, block.prior_rows).index_select(3, block.prior_cols)  # (o, heads, hb·R, wb·S)
        return rearrange(prior, "o e (hb r) (wb s) -> (hb wb) e (r s) o", hb=hb, wb=wb)

    def _block(
        self,
        guidance: Tensor,
        keys_flat: Tensor,
        values_flat: Tensor,
        plan: WindowPlan,
        block: AttentionBlock,
        out: Tensor,
        reads: dict[str, Tensor] | None = None,
    ) -> None:
        """Attention for the LR cells of `block` and the HR rectangle they own.

        `reads`: the neighbour candidates' tables and taps (`_neighbour_reads`), or None.
        """
        (c0, c1), (hb, wb) = block.cells, block.shape
        top, bottom, left, right = block.region
        r, s = plan.rows.longest, plan.cols.longest
        n = guidance.shape[0]

        region = guidance[:, :, top:bottom, left:right].to(self.query.weight.dtype)  # (N, Cq, th, tw)
        if block.row_slots is not None:  # repeat a real row in the padding slots; their outputs are dropped below
            region = region.index_select(2, block.row_slots)
        if block.col_slots is not None:
            region = region.index_select(3, block.col_slots)
        region = rearrange(region, "n c (hb r) (wb s) -> n (hb wb) (r s) c", hb=hb, wb=wb)  # (N, cells, R·S, Cq)
        q = F.linear(region, self.query.weight.flatten(1), self.query.bias)  # (N, cells, R·S, heads·d)
        q = rearrange(q, "n m l (e d) -> n m e l d", e=self.heads)  # (N, cells, heads, R·S, d)

        neighbours = plan.index[c0:c1]  # (cells, window²)
        k = keys_flat[:, neighbours]  # (N, cells, window², heads·d)
        k = rearrange(k, "n m o (e d) -> n m e o d", e=self.heads)  # (N, cells, heads, window², d)
        v = values_flat[:, neighbours]  # (N, cells, window², C), gathered once per cell

        bias = plan.mask[c0:c1].to(keys_flat.dtype)  # (cells, 1, 1, window²)
        if self.prior is not None:
            bias = bias + self._block_prior(plan, block).to(q.dtype)  # (cells, heads, R·S, window²)

        bias = bias[None]  # (1, cells, heads or 1, R·S or 1, window²)
        if reads is not None:
            k, v, bias = self._with_neighbours(k, v, bias, reads, plan, block, q.shape[-2])
        probs = attention_probabilities(q, k, bias, backend=self.backend)  # (N, cells, heads, R·S, candidates)
        weights = probs.mean(dim=2).to(v.dtype)  # (N, cells, R·S, window²)
        # The product is taken transposed, (C × window²)(window² × R·S), so the result's last axis runs
        # along HR columns like the output's and the copy into the output moves contiguous runs.
        mixed = torch.matmul(v.transpose(-1, -2), weights.transpose(-1, -2))  # (N, cells, C, R·S)
        mixed = mixed.view(n, hb, wb, -1, r, s).permute(0, 3, 1, 4, 2, 5)  # (N, C, hb, R, wb, S), a view
        target = out[:, :, top:bottom, left:right]
        if block.row_keep is None and block.col_keep is None:
            target.unflatten(3, (wb, s)).unflatten(2, (hb, r)).copy_(mixed)
            return
        mixed = mixed.reshape(n, -1, hb * r, wb * s)  # (N, C, hb·R, wb·S)
        if block.row_keep is not None:  # drop the padding slots (non-integer scales)
            mixed = mixed.index_select(2, block.row_keep)
        if block.col_keep is not None:
            mixed = mixed.index_select(3, block.col_keep)
        target.copy_(mixed)

    def _with_neighbours(
        self,
        k: Tensor,
        v: Tensor,
        bias: Tensor,
        reads: dict[str, Tensor],
        plan: WindowPlan,
        block: AttentionBlock,
        queries: int,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Append the neighbour-frame candidates of a block of cells to its own window.

        Args:
            k: `(N, cells, heads, window², d)`; v: `(N, cells, window², C)`; bias: broadcastable to
                `(N, cells, heads, R·S, window²)`; reads: `_neighbour_reads`; plan, block: the grid and the
                block's cells; queries: R·S.
        Returns:
            k `(N, cells, heads, L, d)`, v `(N, cells, L, C)`, bias `(N, cells, heads, R·S, L)` with
            L = window² + D·K, the neighbour candidates read once per cell.
        """
        c0, c1 = block.cells
        n, m, heads = k.shape[0], k.shape[1], k.shape[2]
        key_rows, value_rows = reads["key_rows"][c0:c1], reads["value_rows"][c0:c1]  # (cells, N, D, K)
        kt = reads["keys"].index_select(0, key_rows.reshape(-1)).view(*key_rows.shape, -1)  # (cells, N, D, K, heads·d)
        vt = reads["values"].index_select(0, value_rows.reshape(-1)).view(*value_rows.shape, -1)  # (cells, N, D, K, C)
        kt = rearrange(kt, "m n f o (e d) -> n m e (f o) d", e=self.heads)  # (N, cells, heads, D·K, d)
        vt = rearrange(vt, "m n f o c -> n m (f o) c")  # (N, cells, D·K, C)
        extra = reads["bias"][:, c0:c1]  # (N, cells, heads, 1, D·K)
        extra = extra + self._displacement_bias(reads, plan, (c0, c1)).to(extra.dtype)
        own = bias.expand(n, m, heads, queries, bias.shape[-1])
        extra = extra.to(own.dtype).expand(n, m, heads, queries, extra.shape[-1])
        return (
            torch.cat([k, kt.to(k.dtype)], dim=3),
            torch.cat([v, vt.to(v.dtype)], dim=2),
            torch.cat([own, extra], dim=-1),
        )

    @staticmethod
    def _displacement_bias(reads: dict, plan: WindowPlan, cells: tuple[int, int]) -> Tensor:
        """`(N, cells, heads, R·S, D·K)` bias of each candidate from its displacement to each query slot.

        A candidate at window offset o of a window whose centre was rounded by ρ sits, carried back into
        frame t, at c + o − ρ; a query slot at c + φ (`plan.query_offsets`). δ = o − ρ − φ, per axis.
        """
        c0, c1 = cells
        candidate = reads["candidate_offset"][:, c0:c1]  # (N, cells, D, 2, side): o − ρ
        phase_y, phase_x = plan.query_offsets[0][c0:c1], plan.query_offsets[1][c0:c1]  # (cells, R), (cells, S)
        distance = reads["distance"][:, None]  # (D, 1)

        def axis(phase: Tensor, along: Tensor) -> Tensor:  # → (N, cells, slots, D, side, heads)
            delta = along[:, :, None] - phase[None, :, :, None, None].to(along.dtype)  # (N, cells, slots, D, side)
            return reads["displacement"](delta, distance)

        gy = axis(phase_y, candidate[:, :, :, 1])  # (N, cells, R, D, side, heads)
        gx = axis(phase_x, candidate[:, :, :, 0])  # (N, cells, S, D, side, heads)
        side = candidate.shape[-1]
        total = gy[:, :, :, None, :, :, None, :] + gx[:, :, None, :, :, None, :, :]  # (N, cells, R, S, D, sy, sx, heads)
        n, m, r, s_, d = total.shape[:5]
        return total.permute(0, 1, 7, 2, 3, 4, 5, 6).reshape(n, m, -1, r * s_, d * side * side)
