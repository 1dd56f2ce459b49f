"""The feature contract shared by every backbone: an RGB video in, a video of patch features out.

Every wrapper is a `Backbone`:

    feats = backbone.extract(video)        # (B, T, 3, H, W) in [0, 1]  ->  (B, T, C, h, w)
    feats = backbone.extract(image)        # (B, 3, H, W)               ->  (B, 1, C, h, w)

with `C = backbone.embed_dim` and `(h, w) = backbone.grid_size(H, W)`. It exposes `patch_size`,
`embed_dim`, `mean` and `std` (the RGB normalisation it applies itself; callers pass plain [0, 1] frames).

**Input size rule.** A frame of H × W pixels is resized (bilinear, antialiased when shrinking) to
`input_size(H, W, short_side)`: when `short_side` is given the frame is first scaled, keeping its aspect
ratio, so that its shorter side is `short_side`; then each side is rounded to the nearest multiple of the
patch size (halves round up), and is at least one patch. Frames whose sides already are multiples of the
patch are not resampled. The feature grid is `(h, w) = (H' / p, W' / p)`.

**Chunks.** The B·T frames go through the network `chunk` at a time, so activation memory does not grow
with T (only the output does). Built backbones are frozen (see `registry.build_backbone`), so no
autograd graph accumulates across chunks either.
"""

from __future__ import annotations

import abc
import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from videoanyup.validation import check_positive_int, check_video

# Values this far outside [0, 1] are taken as a caller's mistake (0-255 frames, already-normalised frames);
# a little overshoot from bicubic resampling or augmentation is tolerated.
RANGE_TOLERANCE = 0.05


def snap_to_patch(length: float, patch_size: int) -> int:
    """Round a side length to the nearest multiple of `patch_size` (halves up), at least one patch."""
    return patch_size * max(1, math.floor(length / patch_size + 0.5))


class Backbone(nn.Module, abc.ABC):
    """A frozen feature extractor with the contract of this package (see the module docstring).

    Args:
        name: the registered name (for messages and reprs).
        patch_size: side p of a square patch in pixels; one feature vector per patch.
        embed_dim: channels C of the returned features.
        mean, std: per-channel RGB normalisation of the network's training data, applied inside.
        chunk: frames per forward pass.
        short_side: default resize target of the shorter frame side (None: keep the frame's own size,
            rounded to patches).
    Subclasses implement `_encode` (the final feature map) and `_embed` (the patch embedding alone).
    """

    def __init__(
        self,
        *,
        name: str,
        patch_size: int,
        embed_dim: int,
        mean: tuple[float, float, float],
        std: tuple[float, float, float],
        chunk: int = 8,
        short_side: int | None = None,
    ) -> None:
        super().__init__()
        if len(mean) != 3 or len(std) != 3:
            raise ValueError(f"mean and std must have 3 values (RGB), got mean={mean!r}, std={std!r}")
        self.name = name
        self.patch_size = check_positive_int(patch_size, "patch_size")
        self.embed_dim = check_positive_int(embed_dim, "embed_dim")
        self.mean = tuple(float(v) for v in mean)
        self.std = tuple(float(v) for v in std)
        self.chunk = check_positive_int(chunk, "chunk")
        self.short_side = None if short_side is None else check_positive_int(short_side, "short_side")
        # (3, 1, 1) so they broadcast over (n, 3, H, W); not saved in checkpoints
        self.register_buffer("_mean", torch.tensor(self.mean).view(3, 1, 1), persistent=False)
        self.register_buffer("_std", torch.tensor(self.std).view(3, 1, 1), persistent=False)

    # -- size rule ---------------------------------------------------------------------------------------
    def input_size(self, height: int, width: int, short_side: int | None = None) -> tuple[int, int]:
        """The (H', W') a frame of (height, width) pixels is resized to before the network (module docstring)."""
        height, width = check_positive_int(height, "height"), check_positive_int(width, "width")
        short_side = self.short_side if short_side is None else check_positive_int(short_side, "short_side")
        scale = 1.0 if short_side is None else short_side / min(height, width)
        return snap_to_patch(height * scale, self.patch_size), snap_to_patch(width * scale, self.patch_size)

    def grid_size(self, height: int, width: int, short_side: int | None = None) -> tuple[int, int]:
        """The feature grid (h, w) for frames of (height, width) pixels: `input_size(...) / patch_size`."""
        size_h, size_w = self.input_size(height, width, short_side)
        return size_h // self.patch_size, size_w // self.patch_size

    # -- the contract ------------------------------------------------------------------------------------
    def extract(self, video: Tensor, *, chunk: int | None = None, short_side: int | None = None) -> Tensor:
        """Patch features of every frame.

        Args:
            video: (B, T, 3, H, W) or (B, 3, H, W) RGB in [0, 1], on any device (chunks are moved to the
                backbone's device).
            chunk: frames per forward pass (default `self.chunk`).
            short_side: resize target of the shorter side (default `self.short_side`; see `input_size`).
        Returns:
            (B, T, C, h, w) features on the backbone's device and in its dtype, C = `embed_dim`,
            (h, w) = `grid_size(H, W, short_side)`; T = 1 for an image input.
        """
        return self._run(self._encode, video, chunk=chunk, short_side=short_side)

    def forward(self, video: Tensor, *, chunk: int | None = None, short_side: int | None = None) -> Tensor:
        """Same as `extract`."""
        return self.extract(video, chunk=chunk, short_side=short_side)

    def embed_patches(self, video: Tensor, *, chunk: int | None = None, short_side: int | None = None) -> Tensor:
        """The output of the patch embedding alone (no position embedding, no blocks), shaped like `extract`.

        A backbone whose `extract` output is nearly a per-token rescaling of this is degenerate
        (see `degeneracy.check_not_degenerate`). Returns (B, T, C, h, w).
        """
        return self._run(self._embed, video, chunk=chunk, short_side=short_side)

    @abc.abstractmethod
    def _encode(self, frames: Tensor) -> Tensor:
        """Final feature map of normalised frames: (n, 3, H', W') -> (n, C, H'/p, W'/p)."""

    @abc.abstractmethod
    def _embed(self, frames: Tensor) -> Tensor:
        """Patch-embedding output of normalised frames: (n, 3, H', W') -> (n, C, H'/p, W'/p)."""

    # -- shared machinery --------------------------------------------------------------------------------
    def _run(self, fn, video: Tensor, *, chunk: int | None, short_side: int | None) -> Tensor:
        """Check `video`, then resize, normalise and run `fn` over chunks of frames; (B, T, C, h, w) out."""
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
        out = None
        for start in range(0, frames.shape[0], chunk):
            x = self._prepare(frames[start : start + chunk], size, reference)  # (n, 3, H', W')
            y = fn(x)  # (n, C, h, w)
            if out is None:  # allocated once: no concatenation copy at the end
                out = y.new_empty((frames.shape[0], *y.shape[1:]))
            out[start : start + y.shape[0]] = y
        return rearrange(out, "(b t) c h w -> b t c h w", b=batch, t=frames_per_clip)

    def _prepare(self, frames: Tensor, size: tuple[int, int], reference: Tensor) -> Tensor:
        """Resize (float32) and normalise frames: (n, 3, H, W) -> (n, 3, H', W') on the backbone's device/dtype."""
        x = frames.to(device=reference.device, dtype=torch.float32)
        if tuple(x.shape[-2:]) != size:
            shrink = size[0] < x.shape[-2] or size[1] < x.shape[-1]
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=shrink)
        x = (x - self._mean.float()) / self._std.float()
        return x.to(reference.dtype)

    def extra_repr(self) -> str:
        return (
            f"name={self.name!r}, patch_size={self.patch_size}, embed_dim={self.embed_dim}, chunk={self.chunk}, "
            f"short_side={self.short_side}"
        )
