"""Where training and evaluation clips come from: REDS-style folders of frames, video files, or a list of both.

A source path may be
- a folder of frames (`000/00000000.png, …`): one clip;
- a video file (`*.mp4`, decoded with PyAV): one clip;
- a folder whose entries are such clips (the REDS layout `train_sharp/000/…`, or a folder of mp4s).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from torch import Tensor

from videoanyup.tasks.video_io import IMAGE_SUFFIXES, VideoError, is_video_file, probe, read_video


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

    def read(self, start: int = 0, count: int | None = None) -> Tensor:
        """Frames `start … start + count − 1` as `(T, 3, H, W)` float32 in [0, 1].

        Video files are decoded from their first frame on every call; for long training videos, frame
        folders are much faster to sample from.
        """
        return read_video(self.path, start, count)


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
        path = Path(source)
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
