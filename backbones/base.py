"""The feature contract shared by every backbone: an RGB video in, a video of feature maps out, and where
their cells sit on the frames.

Every wrapper is a `Backbone`:

    feats = backbone.extract(video)        # (B, T, 3, H, W) in [0, 1]  ->  (B, T, C, h, w)
    feats = backbone.extract(image)        # (B, 3, H, W)               ->  (B, 1, C, h, w)
    geometry = backbone.geometry(H, W)     # GridGeometry: cell (i, j) centred at offset + stride·(i, j)
    hr = videoanyup.upsample(feats, video, geometry=geometry)

with `C = backbone.embed_dim`, `(h, w) = backbone.grid_size(H, W)`, and `backbone.stride` the pixels of the
network's input between cell centres (a ViT's patch size, a CNN level's reduction). It exposes `mean` and
`std` (the RGB normalisation it applies itself; callers pass plain [0, 1] frames).

**Levels.** A backbone returns one or several levels of its network (`levels`: the model's own index,
stride and channels of each). With one level `extract` returns its map; `extract_levels` returns every
level's map, `geometries` their geometries. `stride`, `embed_dim`, `grid_size` and `geometry` describe the
single level and refuse a backbone of several.

**Input size rule.** A frame of H × W pixels is resized (bilinear, antialiased when shrinking) to
`input_size(H, W, short_side)`: when `short_side` is given the frame is first scaled, keeping its aspect
ratio, so that its shorter side is `short_side`; then each side is rounded to the nearest multiple of
`size_multiple` (halves round up), and is at least one multiple. `size_multiple` is the largest stride
of the levels, or more where the network needs it (Hiera: 32). Frames whose sides already are multiples
are not resampled.

**Geometry.** `geometry(H, W)` says where the cells sit on the H × W frame the caller passed (not the
resized input): a ViT's patches tile it (`GridGeometry.is_tiling()`); a CNN's cells are centred on their
receptive fields, which a padded convolution puts off the tiling (see `grid_trace.py`). Each call of
`extract` checks that the network's grid is the declared one.

**Chunks.** The B·T frames go through the network `chunk` at a time, so activation memory does not grow
with T (only the output does). Built backbones are frozen (see `registry.build_backbone`), so no
autograd graph accumulates across chunks either.
"""

from __future__ import annotations

import abc
import math
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from videoanyup.functional.grid_geometry import GridGeometry
from videoanyup.validation import check_positive_int, check_video

# Values this far outside [0, 1] are taken as a caller's mistake (0-255 frames, already-normalised frames);
# a little overshoot from bicubic resampling or augmentation is tolerated.
RANGE_TOLERANCE = 0.05


def snap_to_multiple(length: float, multiple: int) -> int:
    """Round a side length to the nearest multiple of `multiple` (halves up), at least one multiple."""
    return multiple * max(1, math.floor(length / multiple + 0.5))


snap_to_patch = snap_to_multiple  # the name a ViT's rule had


@dataclass(frozen=True)
class Level:
    """One feature level of a network.

    index: the model's own index of the level (timm's `feature_info`; -1 for a single-level wrapper);
    stride: input pixels between cell centres; channels: C; module: where it is taken, e.g. "layer3".
    """

    index: int
    stride: int
    channels: int
    module: str = ""


class Backbone(nn.Module, abc.ABC):
    """A frozen feature extractor with the contract of this package (see the module docstring).

    Args:
        name: the registered name or spec (for messages and reprs).
        mean, std: per-channel RGB normalisation of the network's training data, applied inside.
        patch_size, embed_dim: a single level of stride `patch_size` and `embed_dim` channels whose cells tile
            the input (a ViT); or, instead of both,
        levels: the levels returned, in order.
        size_multiple: input sides are rounded to multiples of this (default: the largest level stride).
        chunk: frames per forward pass.
        short_side: default resize target of the shorter frame side (None: keep the frame's own size,
            rounded to `size_multiple`).
    Subclasses implement `_encode` (the levels' maps); `_embed` (the patch embedding alone, for the
    degeneracy check of token models) and `_input_geometry` (default: a tiling) where they apply.
    """

    def __init__(
        self,
        *,
        name: str,
        mean: tuple[float, float, float],
        std: tuple[float, float, float],
        patch_size: int | None = None,
        embed_dim: int | None = None,
        levels: Sequence[Level] | None = None,
        size_multiple: int | None = None,
        chunk: int = 8,
        short_side: int | None = None,
    ) -> None:
        super().__init__()
        if len(mean) != 3 or len(std) != 3:
            raise ValueError(f"mean and std must have 3 values (RGB), got mean={mean!r}, std={std!r}")
        if levels is None:
            if patch_size is None or embed_dim is None:
                raise ValueError("give patch_size and embed_dim (one tiling level) or levels")
            levels = (
                Level(-1, check_positive_int(patch_size, "patch_size"), check_positive_int(embed_dim, "embed_dim")),
            )
        elif patch_size is not None or embed_dim is not None:
            raise ValueError("give either patch_size and embed_dim or levels, not both")
        if not levels:
            raise ValueError("levels must name at least one level")
        self.name = name
        self.levels: tuple[Level, ...] = tuple(levels)
        largest = max(level.stride for level in self.levels)
        self.size_multiple = check_positive_int(largest if size_multiple is None else size_multiple, "size_multiple")
        self.mean = tuple(float(v) for v in mean)
        self.std = tuple(float(v) for v in std)
        self.chunk = check_positive_int(chunk, "chunk")
        self.short_side = None if short_side is None else check_positive_int(short_side, "short_side")
        # (3, 1, 1) so they broadcast over (n, 3, H, W); not saved in checkpoints
        self.register_buffer("_mean", torch.tensor(self.mean).view(3, 1, 1), persistent=False)
        self.register_buffer("_std", torch.tensor(self.std).view(3, 1, 1), persistent=False)

    # -- the single level ----------------------------------------------------------------------------------
    def _single(self, what: str) -> Level:
        if len(self.levels) != 1:
            strides = [level.stride for level in self.levels]
            raise ValueError(
                f"backbone {self.name!r} returns {len(self.levels)} levels (strides {strides}), so it has no single "
                f"{what}: use extract_levels / geometries, or name one level"
            )
        return self.levels[0]

    @property
    def stride(self) -> int:
        """Input pixels between cell centres of the single level (a ViT's patch size)."""
        return self._single("stride").stride

    @property
    def patch_size(self) -> int:
        """The single level's stride (the name a ViT's patch had)."""
        return self._single("patch_size").stride

    @property
    def embed_dim(self) -> int:
        """Channels C of the single level."""
        return self._single("embed_dim").channels

    # -- size rule and geometry ----------------------------------------------------------------------------
    def input_size(self, height: int, width: int, short_side: int | None = None) -> tuple[int, int]:
        """The (H', W') a frame of (height, width) pixels is resized to before the network (module docstring)."""
        height, width = check_positive_int(height, "height"), check_positive_int(width, "width")
        short_side = self.short_side if short_side is None else check_positive_int(short_side, "short_side")
        scale = 1.0 if short_side is None else short_side / min(height, width)
        m = self.size_multiple
        return snap_to_multiple(height * scale, m), snap_to_multiple(width * scale, m)

    def _input_geometry(self, position: int, size: tuple[int, int]) -> GridGeometry:
        """Where level `position`'s cells sit on a network input of `size` pixels (default: they tile it)."""
        stride = self.levels[position].stride
        return GridGeometry.tiling((size[0] // stride, size[1] // stride), size)

    def geometries(self, height: int, width: int, short_side: int | None = None) -> list[GridGeometry]:
        """Per level, where the cells sit on the caller's frame of (height, width) pixels."""
        size = self.input_size(height, width, short_side)
        return [self._input_geometry(k, size).resized((height, width)) for k in range(len(self.levels))]

    def geometry(self, height: int, width: int, short_side: int | None = None) -> GridGeometry:
        """Where the single level's cells sit on the caller's frame of (height, width) pixels."""
        self._single("geometry")
        return self.geometries(height, width, short_side)[0]

    def grid_sizes(self, height: int, width: int, short_side: int | None = None) -> list[tuple[int, int]]:
        """Per level, the feature grid (h, w) for frames of (height, width) pixels."""
        size = self.input_size(height, width, short_side)
        return [self._input_geometry(k, size).grid for k in range(len(self.levels))]

    def grid_size(self, height: int, width: int, short_side: int | None = None) -> tuple[int, int]:
        """The single level's feature grid (h, w) for frames of (height, width) pixels."""
        self._single("grid_size")
        return self.grid_sizes(height, width, short_side)[0]

    # -- the contract ------------------------------------------------------------------------------------
    def extract(self, video: Tensor, *, chunk: int | None = None, short_side: int | None = None) -> Tensor:
        """Features of every frame, for a backbone of one level.

        Args:
            video: (B, T, 3, H, W) or (B, 3, H, W) RGB in [0, 1], on any device (chunks are moved to the
                backbone's device).
            chunk: frames per forward pass (default `self.chunk`).
            short_side: resize target of the shorter side (default `self.short_side`; see `input_size`).
        Returns:
            (B, T, C, h, w) features on the backbone's device and in its dtype, C = `embed_dim`,
            (h, w) = `grid_size(H, W, short_side)`; T = 1 for an image input.
        """
        self._single("extract (one map)")
        return self._run(self._encode_levels, video, chunk=chunk, short_side=short_side)[0]

    def extract_levels(self, video: Tensor, *, chunk: int | None = None, short_side: int | None = None) -> list[Tensor]:
        """Every level's features: a list of (B, T, C_k, h_k, w_k), in the order of `levels` (see `extract`)."""
        return self._run(self._encode_levels, video, chunk=chunk, short_side=short_side)

    def forward(self, video: Tensor, *, chunk: int | None = None, short_side: int | None = None) -> Tensor:
        """Same as `extract`."""
        return self.extract(video, chunk=chunk, short_side=short_side)

    @property
    def has_patch_embedding(self) -> bool:
        """Whether `embed_patches` exists: a token model whose patch embedding has the level's grid and C."""
        return type(self)._embed is not Backbone._embed

    def embed_patches(self, video: Tensor, *, chunk: int | None = None, short_side: int | None = None) -> Tensor:
        """The output of the patch embedding alone (no position embedding, no blocks), shaped like `extract`.

        A backbone whose `extract` output is nearly a per-token rescaling of this is degenerate
        (see `degeneracy.check_not_degenerate`). Returns (B, T, C, h, w).
        """
        if not self.has_patch_embedding:
            raise ValueError(f"backbone {self.name!r} has no patch embedding shaped like its features")
        return self._run(lambda x: [self._embed(x)], video, chunk=chunk, short_side=short_side)[0]

    @abc.abstractmethod
    def _encode(self, frames: Tensor) -> Tensor | list[Tensor]:
        """The levels' maps of normalised frames: (n, 3, H', W') -> (n, C, h, w), or a list of them per level."""

    def _embed(self, frames: Tensor) -> Tensor:
        """Patch-embedding output of normalised frames: (n, 3, H', W') -> (n, C, h, w) (token models only)."""
        raise NotImplementedError

    def _encode_levels(self, frames: Tensor) -> list[Tensor]:
        maps = self._encode(frames)
        return [maps] if isinstance(maps, Tensor) else list(maps)

    # -- shared machinery --------------------------------------------------------------------------------
    def _run(self, fn, video: Tensor, *, chunk: int | None, short_side: int | None) -> list[Tensor]:
        """Check `video`, then resize, normalise and run `fn` over chunks of frames; per level (B, T, C, h, w)."""
        video, _ = check_video(video, "video", channels=3, allow_image=True, letters="H, W")
        low, high = float(video.min()), float(video.max())
        if low < -RANGE_TOLERANCE or high > 1 + RANGE_TOLERANCE:
            raise ValueError(
                f"video must hold RGB values in [0, 1], got values in [{low:.3g}, {high:.3g}]; divide 8-bit frames "
                f"by 255 and do not normalise them (the backbone applies mean={self.mean}, std={self.std} itself)"
            )
        chunk = self.chunk if chunk is None else check_positive_int(chunk, "chunk")
        batch, frames_per_clip = video.shape[:2]
        size = self.input_size(video.shape[-2], video.shape[-1], short_side)
        frames = rearrange(video, "b t c h w -> (b t) c h w")  # (B·T, 3, H, W)
        reference = next(self.parameters(), self._mean)
        outs: list[Tensor] | None = None
        for start in range(0, frames.shape[0], chunk):
            x = self._prepare(frames[start : start + chunk], size, reference)  # (n, 3, H', W')
            maps = fn(x)  # per level (n, C, h, w)
            if outs is None:  # allocated once: no concatenation copy at the end
                self._check_grids(maps, size)
                outs = [y.new_empty((frames.shape[0], *y.shape[1:])) for y in maps]
            for out, y in zip(outs, maps):
                out[start : start + y.shape[0]] = y
        return [rearrange(out, "(b t) c h w -> b t c h w", b=batch, t=frames_per_clip) for out in outs]

    def _check_grids(self, maps: list[Tensor], size: tuple[int, int]) -> None:
        """RuntimeError when the network's maps are not the declared grids (a model the trace did not explain)."""
        declared = [self._input_geometry(k, size).grid for k in range(len(self.levels))]
        if len(maps) == len(declared) and all(tuple(y.shape[-2:]) == g for y, g in zip(maps, declared)):
            return
        got = [tuple(y.shape[-2:]) for y in maps]
        raise RuntimeError(f"backbone {self.name!r} returned grids {got} for a {size} input, but declares {declared}")

    def _prepare(self, frames: Tensor, size: tuple[int, int], reference: Tensor) -> Tensor:
        """Resize (float32) and normalise frames: (n, 3, H, W) -> (n, 3, H', W') on the backbone's device/dtype."""
        x = frames.to(device=reference.device, dtype=torch.float32)
        if tuple(x.shape[-2:]) != size:
            shrink = size[0] < x.shape[-2] or size[1] < x.shape[-1]
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=shrink)
        x = (x - self._mean.float()) / self._std.float()
        return x.to(reference.dtype)

    def extra_repr(self) -> str:
        levels = ", ".join(f"(index {lv.index}, stride {lv.stride}, C {lv.channels})" for lv in self.levels)
        return (
            f"name={self.name!r}, levels=[{levels}], size_multiple={self.size_multiple}, chunk={self.chunk}, "
            f"short_side={self.short_side}"
        )
