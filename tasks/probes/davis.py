"""DAVIS-layout video object segmentation data: `ROOT/JPEGImages/<seq>/*.jpg`, `ROOT/Annotations/<seq>/*.png`.

    names = list_sequences(root)                          # sorted sequence names that have frames
    seq = load_sequence(root, "blackswan", frames=8, short_side=224, patch_size=14)
    seq.frames   # (T, 3, H', W') float in [0, 1], resized so the short side is ≈ 224 (patch multiples)
    seq.labels   # (T, H, W) int64 label maps at the original resolution (0 = background)

Masks: DAVIS 2016 PNGs are binary (0 / 255 grey) → label 1 for the object; DAVIS 2017 palette PNGs
(mode "P") hold object ids directly (0 background, 1…N objects; 255, "void", is read as background).
The first `frames` consecutive frames of each sequence are used (all of them if the sequence is shorter).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from videoanyup.backbones.base import snap_to_patch
from videoanyup.tasks.video_io import IMAGE_SUFFIXES, VideoError, to_tensor

log = logging.getLogger(__name__)

VOID = 255


@dataclass
class Sequence:
    """One DAVIS sequence: resized frames, label maps at the original size and the objects it holds."""

    name: str
    frames: Tensor  # (T, 3, H', W') float in [0, 1]
    labels: Tensor  # (T, H, W) int64
    objects: list[int]  # ids > 0 present in any frame


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def check_root(root: str | Path, argument: str) -> Path:
    """`root` as a Path, after checking it has `JPEGImages/` and `Annotations/` (errors name `argument`)."""
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"{argument}: {str(root)!r} is not a folder (expected a DAVIS root with JPEGImages/ and Annotations/)")
    for sub in ("JPEGImages", "Annotations"):
        if not (root / sub).is_dir():
            raise ValueError(f"{argument}: {str(root)!r} has no {sub}/ folder (DAVIS layout: {sub}/<sequence>/)")
    return root


def list_sequences(root: str | Path) -> list[str]:
    """Names of the sequences under `root/JPEGImages` that hold frames, sorted."""
    root = Path(root)
    return sorted(p.name for p in (root / "JPEGImages").iterdir() if p.is_dir() and _image_files(p))


def read_labels(path: Path) -> np.ndarray:
    """`(H, W)` int64 label map of one annotation PNG (module docstring for the two formats)."""
    from PIL import Image

    with Image.open(path) as image:
        if image.mode == "P":
            labels = np.array(image).astype(np.int64)
            labels[labels == VOID] = 0
        else:
            labels = (np.array(image.convert("L")) > 127).astype(np.int64)
    return labels


def resized_size(height: int, width: int, short_side: int, patch_size: int) -> tuple[int, int]:
    """The frame size the probes use: short side scaled to `short_side`, sides snapped to the patch."""
    scale = short_side / min(height, width)
    return snap_to_patch(height * scale, patch_size), snap_to_patch(width * scale, patch_size)


def resize_frames(frames: Tensor, size: tuple[int, int]) -> Tensor:
    """`(T, 3, H, W)` → `(T, 3, *size)` bilinear (antialiased when shrinking), clamped to [0, 1]."""
    if tuple(frames.shape[-2:]) == tuple(size):
        return frames
    shrink = size[0] < frames.shape[-2] or size[1] < frames.shape[-1]
    return F.interpolate(frames, size=size, mode="bilinear", align_corners=False, antialias=shrink).clamp_(0, 1)


def load_sequence(root: str | Path, name: str, *, frames: int, short_side: int, patch_size: int) -> Sequence:
    """The first `frames` frames of sequence `name` and their masks (module docstring)."""
    from PIL import Image

    root = Path(root)
    images = _image_files(root / "JPEGImages" / name)
    if not images:
        raise ValueError(f"sequence {name!r}: {str(root / 'JPEGImages' / name)!r} holds no frames")
    if len(images) < frames:
        log.warning("sequence %s has only %d frames (asked for %d); using them all", name, len(images), frames)
    images = images[:frames]
    if len(images) < 2:
        raise ValueError(f"sequence {name!r} has {len(images)} frame; the probes need at least 2")
    arrays, labels = [], []
    for path in images:
        with Image.open(path) as image:
            arrays.append(np.array(image.convert("RGB")))
        mask_path = root / "Annotations" / name / f"{path.stem}.png"
        if not mask_path.is_file():
            raise ValueError(f"sequence {name!r}: frame {path.name} has no annotation {str(mask_path)!r}")
        labels.append(read_labels(mask_path))
    if len({a.shape for a in arrays}) > 1 or len({m.shape for m in labels}) > 1:
        raise VideoError(f"sequence {name!r}: frames or masks have mixed sizes")
    if labels[0].shape != arrays[0].shape[:2]:
        raise ValueError(f"sequence {name!r}: masks are {labels[0].shape}, frames {arrays[0].shape[:2]}")
    video = to_tensor(arrays)  # (T, 3, H, W)
    size = resized_size(video.shape[-2], video.shape[-1], short_side, patch_size)
    label_maps = torch.from_numpy(np.stack(labels))  # (T, H, W)
    objects = sorted(int(i) for i in torch.unique(label_maps) if i > 0)
    return Sequence(name=name, frames=resize_frames(video, size), labels=label_maps, objects=objects)
