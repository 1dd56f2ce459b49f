"""How a file says that videoanyup wrote it: the ownership mark `output_guard` reads before replacing a file.

A file is ours when it carries the mark of its kind; the kind is read from the file's first bytes, never
from its name, so a renamed or misnamed file is judged by what it is:

- video containers (mp4, m4v, mkv, mov, webm, avi): the container's `comment` metadata reads `TAG`;
- GIF: a comment extension block reading `TAG` right after the header and the global colour table
  (`tag_gif`, before any frame, so demuxers see no extra frame);
- PNG: a text chunk `Software` reading `TAG` (`PNG_METADATA`: matplotlib's `savefig(metadata=…)`, PIL's
  `pnginfo`), found before the image data;
- JSON: one top-level object whose `"format"` starts with `videoanyup` (e.g. `videoanyup-evaluate/1`).

A folder is ours when its manifest `MANIFEST` (`{"format": MANIFEST_FORMAT, "files": [names]}`) lists
every entry in it (`write_manifest` records a finished folder, `foreign_entries` names the others).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterable

TAG = "videoanyup"
MANIFEST = ".videoanyup-output.json"
MANIFEST_FORMAT = "videoanyup-output/1"
GIF_TAG = b"\x21\xfe" + bytes([len(TAG)]) + TAG.encode() + b"\x00"  # a GIF comment extension block
PNG_METADATA = {"Software": TAG}
JSON_FORMAT_PREFIX = TAG
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MAX_JSON_BYTES = 256 * 2**20  # a larger "JSON" file is not one of ours: not parsed


def _gif_tag_offset(head: bytes) -> int | None:
    """Where this tool's comment block sits in a GIF: right after the header, the logical screen
    descriptor and the global colour table."""
    if len(head) < 13 or head[:6] not in (b"GIF87a", b"GIF89a"):
        return None
    flags = head[10]
    return 13 + (3 * 2 ** ((flags & 0x07) + 1) if flags & 0x80 else 0)


def tag_gif(path: str | Path) -> None:
    """Insert this tool's comment block into a finished GIF, before its first frame."""
    path = Path(path)
    data = path.read_bytes()
    offset = _gif_tag_offset(data)
    if offset is None or len(data) < offset:
        raise RuntimeError(f"{str(path)!r} is not a GIF")
    path.write_bytes(data[:offset] + GIF_TAG + data[offset:])


def is_ours_json(data: object) -> bool:
    """Whether parsed JSON `data` is an object of one of this tool's formats."""
    return isinstance(data, dict) and isinstance(data.get("format"), str) and data["format"].startswith(JSON_FORMAT_PREFIX)


def _png_tagged(path: Path) -> bool:
    from PIL import Image

    try:
        with Image.open(path) as image:  # reads the chunks before the image data, decodes nothing
            return image.info.get("Software") == TAG
    except Exception:  # noqa: BLE001 - any unreadable PNG (bombs included) is not ours
        return False


def _json_tagged(path: Path) -> bool:
    if path.stat().st_size > MAX_JSON_BYTES:
        return False
    try:
        return is_ours_json(json.loads(path.read_text()))
    except (ValueError, UnicodeDecodeError, OSError):
        return False


def _container_tagged(path: Path) -> bool:
    import av

    try:
        with av.open(str(path)) as container:
            metadata = {k.lower(): v for k, v in container.metadata.items()}
    except (av.error.FFmpegError, OSError, UnicodeDecodeError):
        return False
    return metadata.get("comment") == TAG


def is_tagged(path: str | Path) -> bool:
    """Whether the regular file `path` (not a symbolic link) carries this tool's mark (see the module notes)."""
    path = Path(path)
    if path.is_symlink() or not path.is_file():
        return False
    with open(path, "rb") as f:
        head = f.read(13 + 768 + len(GIF_TAG))
    if head[:6] in (b"GIF87a", b"GIF89a"):
        offset = _gif_tag_offset(head)
        return offset is not None and head[offset : offset + len(GIF_TAG)] == GIF_TAG
    if head.startswith(PNG_SIGNATURE):
        return _png_tagged(path)
    if head.lstrip()[:1] == b"{":
        return _json_tagged(path)
    return _container_tagged(path)


def read_manifest(folder: Path) -> list[str] | None:
    """The file names a previous run recorded in `folder`, or None when it has no valid manifest."""
    try:
        record = json.loads((Path(folder) / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("format") != MANIFEST_FORMAT:
        return None
    files = record.get("files")
    if not isinstance(files, list) or not all(isinstance(f, str) and "/" not in f and f not in ("", ".", "..") for f in files):
        return None
    return files


def write_manifest(folder: str | Path) -> list[str]:
    """Record every file now in `folder` (flat; no subfolders allowed) as written by this tool."""
    folder = Path(folder)
    names = sorted(entry.name for entry in os.scandir(folder) if entry.name != MANIFEST)
    nested = [n for n in names if (folder / n).is_dir()]
    if nested:
        raise RuntimeError(f"output folders are flat; {str(folder / nested[0])!r} is a folder")
    with open(folder / MANIFEST, "w") as f:
        json.dump({"format": MANIFEST_FORMAT, "files": names}, f, indent=1)
        f.write("\n")
    return names


def foreign_entries(folder: Path, ignore: Iterable[str] = ()) -> list[str]:
    """Entries of `folder` its manifest does not list (all of them when it has no manifest), but `ignore`."""
    listed = read_manifest(folder)
    owned = {*(listed or ()), *ignore} | ({MANIFEST} if listed is not None else set())
    return sorted(entry.name for entry in os.scandir(folder)
                  if entry.name not in owned or (entry.name not in ignore and entry.is_dir(follow_symlinks=False)))
