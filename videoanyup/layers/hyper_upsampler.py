"""The hyper-upsampling unit (DESIGN.md §4.5): content features × scale-only kernels, on any HR region.

- feature branch: residual blocks on the state `g_t`, K×K unfold on the LR grid, bilinear sampling to the
  HR grid → `s` `(N, C·K², H, W)`;
- kernel branch: `HyperKernel` → `w` `(C·K², H, W)`, a function of the scale and the HR phase only;
- `s ⊙ w`, folded on the HR grid (each product is scatter-added to its K×K HR neighbours, the authors'
  default) or summed over the K² positions; 1×1 conv, LeakyReLU(0.1), 3×3 conv to RGB;
- plus the bilinear (DESIGN.md §4.5; or bicubic, `skip`) upsample of the LR frame.

The sampling, the product and the fold are evaluated together as a kernel map over LR patches
(`kernel_map.py`): per tile, one gather of the cached per-class kernels, one gather of the LR patches and
one batched product, without the `(C·K², H, W)` intermediates and with the same number of operations at
every scale. Any rectangular region of the output is computed on its own: the region is widened by the
3×3 conv's halo, computed, and cropped, so a tile equals the same region of the full output. A large
output is computed tile by tile (`tile_size`), which bounds memory by the tile, not the frame.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from videoanyup.functional.grid import Region, check_region
from videoanyup.functional.resize import UPSAMPLE_MODES, prepare_upsample, upsample
from videoanyup.layers.hyper_kernel import HyperKernel
from videoanyup.layers.kernel_map import GridPlan, convolve, gather_product
from videoanyup.layers.residual import ResidualBlock

FOLD_MODES = ("fold", "sum")
TABLE_LIMIT = 2**24  # values of a grid's kernel map (C·E²·Q_h·Q_w); above it, the tiles make their own
CONV_LIMIT = 2**26  # values of the interior's stacked kernels (C·P_h·P_w·E_h'·E_w'; 17 M for `paper` at ×3.7)


def _widen(region: Region, margin: int, size: tuple[int, int]) -> Region:
    top, bottom, left, right = region
    return (max(0, top - margin), min(size[0], bottom + margin), max(0, left - margin), min(size[1], right + margin))


def tiles(region: Region, tile_size: int) -> list[Region]:
    """Split a region into tiles of at most `tile_size`² pixels, row-major."""
    top, bottom, left, right = region
    return [
        (y, min(y + tile_size, bottom), x, min(x + tile_size, right))
        for y in range(top, bottom, tile_size)
        for x in range(left, right, tile_size)
    ]


class HyperUpsampler(nn.Module):
    """`(g_t, x_t)` at LR → the HR frame (or a region of it).

    Args:
        channels: C of the state.
        num_blocks: residual blocks of the feature branch.
        kernel_size: K (odd).
        fold: "fold" (scatter-add to HR neighbours) or "sum" (plain sum over the K² positions).
        tile_size: side of the HR tiles computed at once.
        hyper: keyword arguments of `HyperKernel` (frequencies, group_dim, hidden, depth, omega).
        skip: interpolation of the LR frame that the residual is added to: "bilinear" (the paper) or "bicubic".
    """

    def __init__(
        self,
        channels: int,
        *,
        num_blocks: int,
        kernel_size: int = 3,
        fold: str = "fold",
        tile_size: int = 192,
        out_channels: int = 3,
        hyper: dict | None = None,
        skip: str = "bilinear",
    ) -> None:
        super().__init__()
        if skip not in UPSAMPLE_MODES:
            raise ValueError(f"skip must be one of {UPSAMPLE_MODES}, got {skip!r}")
        self.skip = skip
        if fold not in FOLD_MODES:
            raise ValueError(f"fold must be one of {FOLD_MODES}, got {fold!r}")
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd, got {kernel_size}")
        self.kernel_size, self.fold_mode, self.tile_size = kernel_size, fold, tile_size
        self.blocks = nn.Sequential(*(ResidualBlock(channels) for _ in range(num_blocks)))
        r = kernel_size // 2
        offsets = [(dy, dx) for dy in range(-r, r + 1) for dx in range(-r, r + 1)]  # unfold's order
        self.kernel = HyperKernel(channels, offsets, **(hyper or {}))
        self.mix = nn.Conv2d(channels, channels, 1)
        self.act = nn.LeakyReLU(0.1, inplace=True)
        self.to_rgb = nn.Conv2d(channels, out_channels, 3, padding=1)
        self._plan: GridPlan | None = None  # one grid at a time: a video keeps its grid
        self._table: tuple[Tensor, Tensor] | None = None  # (phase kernels, the grid's kernel map made from them)

    def forward(self, state: Tensor, frame: Tensor, size: Sequence[int], region: Region | None = None) -> Tensor:
        """Args:
            state: `(N, C, h, w)` propagated state.
            frame: `(N, 3, h, w)` LR frame (for the skip).
            size: `(H, W)` of the full HR grid.
            region: `(top, bottom, left, right)` of the HR grid to compute; None for all.
        Returns:
            `(N, 3, bottom − top, right − left)`.
        """
        size = (int(size[0]), int(size[1]))
        region = check_region(region, size)
        features = self.blocks(state)  # (N, C, h, w)
        plan = self.plan((features.shape[-2], features.shape[-1]), size, features.device)
        return self.render(features, frame, plan, region, self.grid_table(plan))

    # -- what is made once per grid ----------------------------------------------------------------
    def plan(self, lr_size: tuple[int, int], size: tuple[int, int], device) -> GridPlan:
        """The grid's index arithmetic on `device` (cached, with its tiles)."""
        plan = self._plan
        if plan is None or (plan.lr_size, plan.hr_size, plan.device) != (lr_size, size, torch.device(device)):
            with torch.inference_mode(False):  # indices that can serve autograd later
                plan = GridPlan(lr_size, size, self.kernel_size, self.fold_mode == "fold", torch.device(device))
            self._plan = plan
        return plan

    def grid_table(self, plan: GridPlan) -> tuple[Tensor, Tensor] | None:
        """The kernel map of every class of the grid `(C, Q_h, E, Q_w, E)` and the interior's stacked kernels
        (`GridPlan.conv_weights`); cached with the phase kernels they were made from, unless gradients flow
        through them. None where the tiles compute the kernels of their own phases instead (grids with too
        many phases)."""
        kernel = self.kernel
        lr_size, size = plan.lr_size, plan.hr_size
        channels = kernel.out_channels
        if not kernel.cacheable(lr_size, size) or plan.table_numel(channels) > TABLE_LIMIT or plan.conv_numel(channels) > CONV_LIMIT:
            return None
        kernels = kernel.phase_kernels(lr_size, size)  # (C·K², P_h, P_w), cached when no gradient flows
        cached = self._table
        if cached is not None and cached[0] is kernels:
            return cached[1]
        table = plan.table(kernels)
        made = (table, plan.conv_weights(table))
        if not kernels.requires_grad:
            self._table = (kernels, made)
        return made

    def prepare(self, frame: Tensor, size: tuple[int, int], region: Region | None = None) -> tuple[GridPlan, tuple[Tensor, Tensor] | None]:
        """Everything `render` reads besides the frame's values, made now for frames like `frame` `(N, 3, h, w)`
        (its size, dtype and device): the grid's plan with the indices of every tile and edge band of
        `region`, the skip's taps, and `grid_table(plan)`. After this, `render` on that region runs tensor
        operations only (what `torch.compile` traces without graph breaks)."""
        size = (int(size[0]), int(size[1]))
        region = check_region(region, size)
        lr_size = (int(frame.shape[-2]), int(frame.shape[-1]))
        prepare_upsample(lr_size, size, region, mode=self.skip, dtype=frame.dtype, device=frame.device)
        plan = self.plan(lr_size, size, frame.device)
        tables = self.grid_table(plan)
        for tile_row in self._tile_rows(region):
            for tile in tile_row:
                plan.tile(_widen(tile, 1, size))
        for band in plan.edge_bands(_widen(region, 1, size)) if tables is not None else ():
            plan.tile(band)
        return plan, tables

    def clear_cache(self) -> None:
        """Drop the cached grid (index arithmetic, kernel map and phase kernels)."""
        self._plan, self._table = None, None
        self.kernel.clear_cache()

    def train(self, mode: bool = True) -> "HyperUpsampler":
        self._table = None
        return super().train(mode)

    # -- per frame ---------------------------------------------------------------------------------
    def render(self, features: Tensor, frame: Tensor, plan: GridPlan, region: Region, tables: tuple[Tensor, Tensor] | None) -> Tensor:
        """The output on `region` from the feature branch's maps: `(N, C, h, w)`, `(N, 3, h, w)` → `(N, 3, th, tw)`.

        `tables`: `grid_table(plan)`, or None to compute each tile's kernels on the spot.
        """
        padded = F.pad(features, plan.pad)  # (N, C, h', w'): the unfold's zero padding, and room for the gathers
        bands = []
        if tables is not None:  # the edge rows and columns, once for all tiles
            table = tables[0]
            for band in plan.edge_bands(_widen(region, 1, plan.hr_size)):
                tile = plan.tile(band)
                kernel_map = table.index_select(1, tile.row_class).index_select(3, tile.col_class)  # (C, bh, E, bw, E)
                bands.append((band, gather_product(padded, tile, kernel_map, (plan.rows.extent, plan.cols.extent))))
        rows = []
        for tile_row in self._tile_rows(region):
            parts = [self._tile(padded, plan, tables, bands, tile) for tile in tile_row]
            rows.append(parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1))
        residual = rows[0] if len(rows) == 1 else torch.cat(rows, dim=-2)  # (N, 3, th, tw)
        return residual + upsample(frame, plan.hr_size, region, mode=self.skip)

    def _tile_rows(self, region: Region) -> list[list[Region]]:
        all_tiles = tiles(region, self.tile_size)
        per_row = len(range(region[2], region[3], self.tile_size))
        return [all_tiles[i : i + per_row] for i in range(0, len(all_tiles), per_row)]

    def fused_features(self, padded: Tensor, plan: GridPlan, tables, bands: list, region: Region) -> Tensor:
        """`fold(s ⊙ w)` on `region`: `(N, C, th, tw)`.

        Args:
            padded: `(N, C, h', w')` the feature branch's maps, zero-padded by `plan.pad`.
            tables: `grid_table(plan)` or None; bands: the edge bands `[(region, (N, C, bh, bw))]` (with tables).
        """
        tile = plan.tile(region)
        if tables is None:  # the whole region by gathers, with the kernels of its own phases
            kernels = self.kernel.kernels_of_phases(plan.lr_size, plan.hr_size, tile.row_phases, tile.col_phases)
            kernel_map = tile.table(kernels).index_select(1, tile.local_row_class).index_select(3, tile.local_col_class)
            return gather_product(padded, tile, kernel_map, (plan.rows.extent, plan.cols.extent))
        top, bottom, left, right = region
        fused = convolve(padded, tile, tables[1], plan, (bottom - top, right - left))  # exact on the interior
        for (b_top, b_bottom, b_left, b_right), values in bands:  # the edges from the bands
            y0, y1, x0, x1 = max(top, b_top), min(bottom, b_bottom), max(left, b_left), min(right, b_right)
            if y0 < y1 and x0 < x1:
                fused[..., y0 - top : y1 - top, x0 - left : x1 - left] = values[..., y0 - b_top : y1 - b_top, x0 - b_left : x1 - b_left]
        return fused

    def _tile(self, padded: Tensor, plan: GridPlan, tables, bands: list, region: Region) -> Tensor:
        """The residual `(N, 3, th, tw)` of one tile."""
        inner = _widen(region, 1, plan.hr_size)  # the 3×3 conv's halo, inside the frame
        fused = self.act(self.mix(self.fused_features(padded, plan, tables, bands, inner)))  # (N, C, ih, iw)
        # The conv's zero padding stands where the halo left the frame, as the full-frame conv sees it.
        residual = F.conv2d(fused, self.to_rgb.weight, self.to_rgb.bias, padding=1)  # (N, 3, ih, iw)
        top, bottom, left, right = region
        return residual[..., top - inner[0] : bottom - inner[0], left - inner[2] : right - inner[2]]
