"""The content-independent hyper-network that predicts upsampling kernels (DESIGN.md §4.5).

For every HR pixel and every kernel offset (dy, dx), a small SIREN maps
`[enc(scale code) ‖ enc(HR phase) ‖ enc(offset)]` to `out_channels` kernel values. The scale code is
(2/a, 2/b) with the effective scale a = H/h, b = W/w; the phase is the HR pixel's offset from its nearest
LR pixel centre, in LR pixels, computed with integer arithmetic (`functional.grid.axis_phases`). Each
group (scale, phase, offset) is encoded with sin/cos at 16 frequencies 2^linspace(0, 10, 16) − 1 and
projected to 32 dims; the SIREN (ω0 = 30) has widths 96 → 16 → 16 → 16 → out_channels.

Because the kernel depends on the HR pixel only through its phase, the distinct kernels of a grid are
the P_h × P_w phase pairs. In eval mode they are computed once and cached exactly (no quantisation); a
region of the grid gathers them by phase index. Above `cache_limit` values, kernels are computed for the
phases a region needs instead. The cache is keyed by the grid, device, dtype and the parameters' version
counters, so it never serves kernels of stale weights.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor, nn

from videoanyup.functional.gather import gather_grid
from videoanyup.functional.grid import Region, axis_phases, check_region, num_phases
from videoanyup.layers.positional_encoding import log_frequencies, sinusoidal_encoding


def _version(p: Tensor) -> tuple[int, int]:
    """What identifies a parameter's values: its storage and in-place version counter.

    Tensors made under `torch.inference_mode()` have no version counter; they cannot be changed in place
    outside inference mode, so their storage stands in.
    """
    try:
        return (p.data_ptr(), p._version)
    except RuntimeError:
        return (p.data_ptr(), -1)


def _as_range(index: Tensor) -> slice | None:
    """`index` as a slice when it counts up by one (a region inside one period of the phases)."""
    first, count = int(index[0]), index.numel()
    if int(index[-1]) - first == count - 1 and (count <= 2 or bool((index.diff() == 1).all())):
        return slice(first, first + count)
    return None


def _period_range(start: int, stop: int, period: int) -> slice | None:
    """The phases of positions `start..stop-1` as a slice, when they lie inside one period."""
    if start // period == (stop - 1) // period:
        return slice(start % period, start % period + stop - start)
    return None


def _take(table: Tensor, rows: Tensor, cols: Tensor) -> Tensor:
    """`table[:, rows][:, :, cols]` for `(M, A, B)`; a view without copying when both are ranges.

    `rows` and `cols` stay on the CPU for the range test (on a GPU it would synchronise the device) and
    move to the table's device only to gather."""
    row_range, col_range = _as_range(rows), _as_range(cols)
    if row_range is not None and col_range is not None:
        return table[:, row_range, col_range]
    return gather_grid(table, rows.to(table.device, non_blocking=True), cols.to(table.device, non_blocking=True))


class SineLayer(nn.Module):
    """`sin(ω0 · (W x + b))` with the SIREN initialisation (Sitzmann et al. 2020)."""

    def __init__(self, in_features: int, out_features: int, *, omega: float, first: bool) -> None:
        super().__init__()
        self.omega = omega
        self.linear = nn.Linear(in_features, out_features)
        bound = 1.0 / in_features if first else math.sqrt(6.0 / in_features) / omega
        nn.init.uniform_(self.linear.weight, -bound, bound)

    def forward(self, x: Tensor) -> Tensor:
        return torch.sin(self.omega * self.linear(x))


class HyperKernel(nn.Module):
    """Kernels `(n_offsets, out_channels)` for every HR pixel of a grid.

    Args:
        out_channels: values predicted per HR pixel and offset (C for BasicAVSR, heads for VideoAnyUp).
        offsets: the kernel offsets (dy, dx), e.g. {-1, 0, 1}² for a 3×3 kernel.
        frequencies: sinusoidal frequencies per value.
        group_dim: projection width of each encoded group (scale, phase, offset).
        hidden: SIREN width; `depth` sine layers.
        omega: SIREN ω0.
        cache_limit: the most values the phase cache may hold for one grid.
    """

    def __init__(
        self,
        out_channels: int,
        offsets: Sequence[tuple[int, int]],
        *,
        frequencies: int = 16,
        group_dim: int = 32,
        hidden: int = 16,
        depth: int = 3,
        omega: float = 30.0,
        cache_limit: int = 2**26,
    ) -> None:
        super().__init__()
        self.out_channels = out_channels
        self.register_buffer("offsets", torch.tensor(list(offsets), dtype=torch.float32), persistent=False)
        self.register_buffer("frequencies", log_frequencies(frequencies).float(), persistent=False)
        encoded = 2 * 2 * frequencies  # two values per group, sin and cos
        self.scale_proj = nn.Linear(encoded, group_dim)
        self.phase_proj = nn.Linear(encoded, group_dim)
        self.offset_proj = nn.Linear(encoded, group_dim)
        self.first = SineLayer(3 * group_dim, hidden, omega=omega, first=True)
        self.hidden_layers = nn.Sequential(
            *(SineLayer(hidden, hidden, omega=omega, first=False) for _ in range(depth - 1))
        )
        self.head = nn.Linear(hidden, out_channels)
        self.cache_limit = cache_limit
        self._cache: dict[tuple, Tensor] = {}

    @property
    def num_offsets(self) -> int:
        return self.offsets.shape[0]

    # -- the network -------------------------------------------------------------------------------
    def compute(self, scale_code: tuple[float, float], row_offsets: Tensor, col_offsets: Tensor) -> Tensor:
        """Kernels for every (row phase, column phase, kernel offset).

        The first SIREN layer is linear in the concatenated encodings, so its pre-activation is a sum of a
        row term, a column term, an offset term and a constant: computed per axis and broadcast.

        Args:
            scale_code: (2/a, 2/b).
            row_offsets: `(R,)` float64 sub-pixel offsets of HR rows, in LR pixels.
            col_offsets: `(S,)` float64 sub-pixel offsets of HR columns.
        Returns:
            `(R, S, n_offsets, out_channels)` in the parameters' dtype.
        """
        weight = self.first.linear.weight  # (hidden, 3·group_dim)
        dtype, device = weight.dtype, weight.device
        freqs = self.frequencies.to(device=device, dtype=torch.float64)
        group = self.scale_proj.out_features
        w_scale, w_phase, w_offset = weight.split(group, dim=1)  # each (hidden, group_dim)
        half = self.phase_proj.in_features // 2
        w_phase_y, w_phase_x = self.phase_proj.weight.split(half, dim=1)  # (group_dim, 2F) each

        def encode(values: Tensor) -> Tensor:  # (n,) float64 -> (n, 2F)
            return sinusoidal_encoding(values.to(device)[:, None], freqs).to(dtype)

        scale = torch.tensor(scale_code, device=device, dtype=torch.float64)
        scale_term = self.scale_proj(sinusoidal_encoding(scale, freqs).to(dtype)) @ w_scale.T  # (hidden,)
        row_term = (encode(row_offsets) @ w_phase_y.T) @ w_phase.T  # (R, hidden)
        col_term = (encode(col_offsets) @ w_phase_x.T) @ w_phase.T  # (S, hidden)
        phase_bias = self.phase_proj.bias @ w_phase.T  # (hidden,)
        offset_enc = sinusoidal_encoding(self.offsets.to(device=device, dtype=torch.float64), freqs).to(dtype)
        offset_term = self.offset_proj(offset_enc) @ w_offset.T  # (n_offsets, hidden)
        constant = scale_term + phase_bias + self.first.linear.bias  # (hidden,)
        pre = (
            row_term[:, None, None, :]
            + col_term[None, :, None, :]
            + offset_term[None, None, :, :]
            + constant
        )  # (R, S, n_offsets, hidden)
        hidden = self.hidden_layers(torch.sin(self.first.omega * pre))
        return self.head(hidden)  # (R, S, n_offsets, out_channels)

    # -- the phase cache ---------------------------------------------------------------------------
    def _cache_key(self, lr_size: tuple[int, int], hr_size: tuple[int, int], device, dtype) -> tuple:
        return (tuple(lr_size), tuple(hr_size), str(device), dtype, tuple(_version(p) for p in self.parameters()))

    def phase_kernels(self, lr_size: tuple[int, int], hr_size: tuple[int, int]) -> Tensor:
        """All distinct kernels of a grid: `(out_channels·n_offsets, P_h, P_w)`, index `o·n_offsets + k`.

        Cached whenever no gradient is being recorded for the weights (inference, `torch.no_grad`).
        """
        weight = self.head.weight
        use_cache = not (torch.is_grad_enabled() and weight.requires_grad)  # never cut a gradient
        key = self._cache_key(lr_size, hr_size, weight.device, weight.dtype) if use_cache else None
        if use_cache and key in self._cache:
            return self._cache[key]
        rows = axis_phases(lr_size[0], hr_size[0], 0, 0)
        cols = axis_phases(lr_size[1], hr_size[1], 0, 0)
        scale_code = (2.0 * lr_size[0] / hr_size[0], 2.0 * lr_size[1] / hr_size[1])
        kernels = self._as_maps(self.compute(scale_code, rows.phase_offsets, cols.phase_offsets))
        if use_cache:
            self._cache.clear()  # one grid at a time: a video keeps its grid
            self._cache[key] = kernels
        return kernels

    def kernels_of_phases(self, lr_size: tuple[int, int], hr_size: tuple[int, int], row_phases: Tensor, col_phases: Tensor) -> Tensor:
        """Kernels of some phases of a grid only, never cached: `(out_channels·n_offsets, R, S)` for the phase
        indices `row_phases` `(R,)` × `col_phases` `(S,)` (CPU int64), laid out like `phase_kernels`."""
        rows = axis_phases(lr_size[0], hr_size[0], 0, 0)
        cols = axis_phases(lr_size[1], hr_size[1], 0, 0)
        scale_code = (2.0 * lr_size[0] / hr_size[0], 2.0 * lr_size[1] / hr_size[1])
        return self._as_maps(self.compute(scale_code, rows.phase_offsets[row_phases], cols.phase_offsets[col_phases]))

    @staticmethod
    def _as_maps(kernels: Tensor) -> Tensor:
        """`(R, S, n, out)` → contiguous `(out·n, R, S)`."""
        r, s, n, out = kernels.shape
        return kernels.permute(3, 2, 0, 1).reshape(out * n, r, s)

    def cacheable(self, lr_size: tuple[int, int], hr_size: tuple[int, int]) -> bool:
        p_h, p_w = num_phases(lr_size[0], hr_size[0]), num_phases(lr_size[1], hr_size[1])
        return p_h * p_w * self.num_offsets * self.out_channels <= self.cache_limit

    def cache_numel(self) -> int:
        """Values held by the cache now."""
        return sum(t.numel() for t in self._cache.values())

    def clear_cache(self) -> None:
        self._cache.clear()

    def train(self, mode: bool = True) -> "HyperKernel":
        self._cache.clear()
        return super().train(mode)

    # -- kernels of a region -----------------------------------------------------------------------
    def forward(self, lr_size: Sequence[int], hr_size: Sequence[int], region: Region | None = None) -> Tensor:
        """Kernels of every HR pixel in `region` (default: the whole grid).

        Returns:
            `(n_offsets, out_channels, th, tw)`, a transposed view of an `(out_channels, n_offsets, th, tw)`
            tensor (so `.transpose(0, 1)` gives the channel-major layout for free). Where the region lies
            inside one period of the phases (e.g. grids with gcd(H, h) = 1) that tensor is a view of the cache.
        """
        lr_size, hr_size = (int(lr_size[0]), int(lr_size[1])), (int(hr_size[0]), int(hr_size[1]))
        top, bottom, left, right = check_region(region, hr_size)
        rows = axis_phases(lr_size[0], hr_size[0], top, bottom)
        cols = axis_phases(lr_size[1], hr_size[1], left, right)
        if self.cacheable(lr_size, hr_size):
            table = self.phase_kernels(lr_size, hr_size)  # (out·n, P_h, P_w)
            row_range, col_range = _period_range(top, bottom, rows.period), _period_range(left, right, cols.period)
            if row_range is not None and col_range is not None:  # decided from the region alone: no host read
                gathered = table[:, row_range, col_range]
                return gathered.view(self.out_channels, self.num_offsets, *gathered.shape[-2:]).transpose(0, 1)
            row_index, col_index = rows.phase, cols.phase  # CPU: `_take` moves them if it gathers
        else:
            # Compute only the phases this region uses.
            row_unique, row_index = torch.unique(rows.phase, return_inverse=True)
            col_unique, col_index = torch.unique(cols.phase, return_inverse=True)
            table = self.kernels_of_phases(lr_size, hr_size, row_unique, col_unique)
        gathered = _take(table, row_index, col_index)  # (out·n, th, tw)
        return gathered.view(self.out_channels, self.num_offsets, *gathered.shape[-2:]).transpose(0, 1)
