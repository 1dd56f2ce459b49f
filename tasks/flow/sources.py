"""Still images for synthetic flow pairs: frame folders, video files (PyAV) and the images scikit-image ships.

Every source becomes a list of `(3, H, W)` uint8 tensors held in memory (a few hundred MB at most for the
default frame stride), so that a synthetic pair is a pure function of its index and costs no disk reads.
Consecutive video frames are nearly identical, so folders and videos are subsampled with `frame_stride`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import Tensor

from videoanyup.tasks.samples import resolve_source
from videoanyup.tasks.video_io import IMAGE_SUFFIXES, VideoError, is_video_file, iter_frames

log = logging.getLogger(__name__)

SKIMAGE_NAMES = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry", "coins", "camera")


def _to_chw(array: np.ndarray) -> Tensor:
    """`(H, W)` or `(H, W, 3|4)` uint8 → `(3, H, W)` uint8."""
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    array = np.array(array[:, :, :3], dtype=np.uint8, copy=True)
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()  # (3, H, W)


def skimage_images(names: Sequence[str] = SKIMAGE_NAMES) -> list[Tensor]:
    """Images that scikit-image ships, as `(3, H, W)` uint8 tensors (grey images repeated to RGB)."""
    import skimage.data

    images = []
    for name in names:
        loader = getattr(skimage.data, name, None)
        if loader is None:
            raise ValueError(f"names: scikit-image has no image {name!r}")
        images.append(_to_chw(np.asarray(loader())))
    return images


def _frames_of(path: Path, frame_stride: int) -> list[Tensor]:
    return [_to_chw(frame) for i, frame in enumerate(iter_frames(path)) if i % frame_stride == 0]


def _clip_paths(root: Path) -> list[Path]:
    """The clips under `root`: itself if it is a frame folder or video, else its sub-folders / videos, recursively."""
    if root.is_file():
        if not is_video_file(root):
            raise VideoError(f"data source {str(root)!r} is a file but not a video")
        return [root]
    if not root.is_dir():
        raise VideoError(f"data source {str(root)!r} does not exist")
    entries = sorted(root.iterdir())
    if any(p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES for p in entries):
        return [root]
    clips = [p for p in entries if p.is_file() and is_video_file(p)]
    for sub in (p for p in entries if p.is_dir()):
        clips += _clip_paths(sub)
    return clips


def load_images(
    sources: Sequence[str | Path], *, frame_stride: int = 4, min_side: int = 0, with_skimage: bool = True
) -> list[Tensor]:
    """Every `frame_stride`-th frame of each clip under `sources`, plus scikit-image's images.

    Args:
        sources: frame folders, video files, or folders holding those (searched recursively).
        frame_stride: keep frames 0, s, 2s, … of each clip.
        min_side: drop images whose shorter side is below this (they would have to be upscaled a lot).
        with_skimage: also add `skimage_images()`.
    Returns:
        list of `(3, H, W)` uint8 tensors.
    """
    if frame_stride < 1:
        raise ValueError(f"frame_stride must be ≥ 1, got {frame_stride}")
    images: list[Tensor] = []
    for source in sources:
        clips = _clip_paths(resolve_source(source))
        if not clips:
            raise VideoError(f"data source {str(source)!r} holds no frame folders or videos")
        for clip in clips:
            frames = _frames_of(clip, frame_stride)
            log.info("%s: %d frames", clip, len(frames))
            images += frames
    if with_skimage:
        images += skimage_images()
    kept = [im for im in images if min(im.shape[-2:]) >= min_side]
    if not kept:
        raise ValueError(f"sources: no image with a shorter side of at least {min_side} pixels")
    return kept
