"""The hyper-upsampling unit (DESIGN.md §4.5): content features × scale-only kernels, on any HR region.

- feature branch: residual blocks on the state `g_t`, K×K unfold on the LR grid, bilinear sampling to the
  HR grid → `s` `(N, C·K², H, W)`;
- kernel branch: `HyperKernel` → `w` `(C·K², H, W)`, a function of the scale and the HR phase only;
- `s ⊙ w`, folded on the HR grid (each product is scatter-added to its K×K HR neighbours, the authors'
  default) or summed over the K² positions; 1×1 conv, LeakyReLU(0.1), 3×3 conv to RGB;
- plus the bilinear (DESIGN.md §4.5; or bicubic, `skip`) upsample of the LR frame.

Away from the borders the same sums are evaluated as strided depthwise convolutions, one kernel per phase
(`PhaseConvolution`), without the `(C·K², H, W)` intermediates. Any rectangular region of the output is
computed on its own: the region is widened by the fold's and the
3×3 conv's halos, computed, and cropped, so a tile equals the same region of the full output. A large
output is computed tile by tile (`tile_size`), which bounds memory by the tile, not the frame.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from videoanyup.functional.grid import Region, check_region, num_phases
from videoanyup.functional.resize import UPSAMPLE_MODES, bilinear_upsample, upsample
from videoanyup.layers.hyper_kernel import HyperKernel
from videoanyup.layers.phase_convolution import PhaseConvolution
from videoanyup.layers.residual import ResidualBlock

FOLD_MODES = ("fold", "sum")
MAX_ROW_PHASES = 256  # one convolution call per row phase
PHASE_WEIGHT_LIMIT = 2**24  # values of the stacked per-phase kernels


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


class FrameFeatures:
    """The feature branch's LR maps of one frame, with the derived maps each evaluation path needs, made once.

    Attributes:
        features: `(N, C, h, w)`.
        unfolded: a callable returning `(N, C·K², h, w)`, the K×K unfold (channel c·K² + k), made on first use.
        padded(margin): `(N, C, h + 2m, w + 2m)` zero-padded features, made once per margin.
    """

    def __init__(self, features: Tensor, kernel_size: int) -> None:
        self.features, self.kernel_size = features, kernel_size
        self.lr_size = (features.shape[-2], features.shape[-1])
        self._unfolded: Tensor | None = None
        self._padded: dict[int, Tensor] = {}

    def unfolded(self) -> Tensor:
        if self._unfolded is None:
            k = self.kernel_size
            flat = F.unfold(self.features, k, padding=k // 2)  # (N, C·K², h·w)
            self._unfolded = flat.view(self.features.shape[0], -1, *self.lr_size)
        return self._unfolded

    def padded(self, margin: int) -> Tensor:
        if margin not in self._padded:
            self._padded[margin] = F.pad(self.features, (margin,) * 4)
        return self._padded[margin]


class HyperUpsampler(nn.Module):
    """`(g_t, x_t)` at LR → the HR frame (or a region of it).

    Args:
        channels: C of the state.
        num_blocks: residual blocks of the feature branch.
        kernel_size: K (odd).
        fold: "fold" (scatter-add to HR neighbours) or "sum" (plain sum over the K² positions).
        tile_size: side of the HR tiles computed at once.
        hyper: keyword arguments of `HyperKernel` (frequencies, group_dim, hidden, depth, omega).
        phase_convolution: evaluate the interior as strided depthwise convolutions per phase (exact, much
            faster; see `phase_convolution.py`) when the grid has few phases.
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
        phase_convolution: bool = True,
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
        self.phase_convolution = phase_convolution
        self._phase_cache: tuple[Tensor, PhaseConvolution] | None = None

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
        features = FrameFeatures(self.blocks(state), self.kernel_size)
        rows = []
        for tile_row in self._tile_rows(region):
            rows.append(torch.cat([self._tile(features, frame, size, tile) for tile in tile_row], dim=-1))
        return torch.cat(rows, dim=-2)

    def _tile_rows(self, region: Region) -> list[list[Region]]:
        all_tiles = tiles(region, self.tile_size)
        per_row = len(range(region[2], region[3], self.tile_size))
        return [all_tiles[i : i + per_row] for i in range(0, len(all_tiles), per_row)]

    def _phase_convolution(self, lr_size: tuple[int, int], size: tuple[int, int]) -> PhaseConvolution | None:
        """The convolutional evaluation of this grid, if it pays (few phases), cached with the kernels."""
        kernel = self.kernel
        if not self.phase_convolution or not kernel.cacheable(lr_size, size):
            return None
        p_h, p_w = num_phases(lr_size[0], size[0]), num_phases(lr_size[1], size[1])
        # The stacked per-phase kernels: P_h · C·P_w · (≈4) · (≈4 + column stride) values.
        stride_w = lr_size[1] // math.gcd(lr_size[1], size[1])
        if p_h > MAX_ROW_PHASES or p_h * p_w * kernel.out_channels * 4 * (4 + stride_w) > PHASE_WEIGHT_LIMIT:
            return None
        table = kernel.phase_kernels(lr_size, size)
        cached = self._phase_cache
        if cached is not None and cached[0] is table:
            return cached[1]
        evaluator = PhaseConvolution(table, self.kernel_size, lr_size, size, fold=self.fold_mode == "fold")
        if not table.requires_grad:
            self._phase_cache = (table, evaluator)
        return evaluator

    def fused_features(self, features: "FrameFeatures", size: tuple[int, int], region: Region) -> Tensor:
        """`fold(s ⊙ w)` on `region`: `(N, C, th, tw)`.

        The interior goes through `PhaseConvolution` when the grid allows it; border bands (and everything,
        otherwise) through the direct evaluation.
        """
        lr_size = features.lr_size
        fast = self._phase_convolution(lr_size, size)
        unfolded = features.unfolded
        if fast is None:
            return self._direct(unfolded, lr_size, size, region)
        top, bottom, left, right = region
        in_top, in_bottom, in_left, in_right = fast.interior
        core = (max(top, in_top), min(bottom, in_bottom), max(left, in_left), min(right, in_right))
        if core[0] >= core[1] or core[2] >= core[3]:
            return self._direct(unfolded, lr_size, size, region)
        middle = [
            self._direct(unfolded, lr_size, size, (core[0], core[1], left, core[2])) if left < core[2] else None,
            fast(features.padded(fast.margin), core),
            self._direct(unfolded, lr_size, size, (core[0], core[1], core[3], right)) if core[3] < right else None,
        ]
        bands = [
            self._direct(unfolded, lr_size, size, (top, core[0], left, right)) if top < core[0] else None,
            torch.cat([m for m in middle if m is not None], dim=-1),
            self._direct(unfolded, lr_size, size, (core[1], bottom, left, right)) if core[1] < bottom else None,
        ]
        return torch.cat([b for b in bands if b is not None], dim=-2)

    def _direct(self, unfolded: "Callable[[], Tensor]", lr_size: tuple[int, int], size: tuple[int, int], region: Region) -> Tensor:
        """`fold(s ⊙ w)` on `region` the literal way: sample, multiply, fold. `(N, C, th, tw)`."""
        unfolded = unfolded()
        n, ck2 = unfolded.shape[:2]
        k2 = self.kernel_size**2
        margin = self.kernel_size // 2 if self.fold_mode == "fold" else 0
        wide = _widen(region, margin, size)
        sampled = bilinear_upsample(unfolded, size, wide)  # (N, C·K², wh, ww)
        kernels = self.kernel(lr_size, size, wide)  # (K², C, wh, ww)
        kernels = kernels.transpose(0, 1).flatten(0, 1)  # (C·K², wh, ww), a view
        product = sampled * kernels
        wh, ww = product.shape[-2:]
        if self.fold_mode == "sum":
            return product.view(n, ck2 // k2, k2, wh, ww).sum(dim=2)
        folded = F.fold(
            product.view(n, ck2, wh * ww), (wh, ww), self.kernel_size, padding=self.kernel_size // 2
        )  # (N, C, wh, ww): each product scatter-added to its K×K neighbours
        top, bottom, left, right = region
        return folded[..., top - wide[0] : bottom - wide[0], left - wide[2] : right - wide[2]]

    def _tile(self, features: "FrameFeatures", frame: Tensor, size: tuple[int, int], region: Region) -> Tensor:
        inner = _widen(region, 1, size)  # the 3×3 conv's halo, inside the frame
        fused = self.act(self.mix(self.fused_features(features, size, inner)))  # (N, C, ih, iw)
        top, bottom, left, right = region
        # Zero padding where the halo leaves the frame, as the full-frame conv would see.
        pad = (1 - (left - inner[2]), 1 - (inner[3] - right), 1 - (top - inner[0]), 1 - (inner[1] - bottom))
        residual = F.conv2d(F.pad(fused, pad), self.to_rgb.weight, self.to_rgb.bias)  # (N, 3, th, tw)
        return residual + upsample(frame, size, region, mode=self.skip)
