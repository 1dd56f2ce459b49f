"""What a command may write and replace: the ownership rule of every `videoanyup` output.

A command writes its output next to the target (a hidden temporary file or folder) and puts it in place
only when it is complete. This module decides whether that is allowed, and replaces an existing output
without ever deleting a file this tool did not create:

- `check_location(target, inputs)` refuses a target that is an input, holds an input (an ancestor
  folder of it), is the current folder or one of its ancestors, or whose parent is a file.
- Output folders carry a manifest, `MANIFEST` (`{"format": …, "files": [names]}`), listing every file
  the tool wrote there. Output files carry a tag: the container's `comment` metadata (mp4, mkv, mov,
  webm, avi) or a GIF comment block before the first frame (`.gif`) reading `TAG`.
- `check_replaceable(target, overwrite)` lets a run replace an existing target only with `overwrite`,
  and only when it is ours: a tagged file, or a folder whose every entry is in its manifest. Otherwise
  it raises `OutputError` naming a foreign file.
- `temporary_path(target, folder=…)` creates the hidden temporary file / folder with the permissions
  the user's umask gives (not `mkstemp`'s 0600 / `mkdtemp`'s 0700).
- `write_manifest(folder)` records a finished folder's files; `put_in_place(tmp, target)` renames the
  temporary output onto the target; an old folder is moved aside and emptied file by file, only of the
  names its manifest lists.

Every refusal is an `OutputError`, a `ValueError`, so the command line turns it into exit status 2.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import signal
import threading
from pathlib import Path
from typing import Iterable, Iterator

log = logging.getLogger(__name__)

MANIFEST = ".videoanyup-output.json"
MANIFEST_FORMAT = "videoanyup-output/1"
TAG = "videoanyup"
GIF_TAG = b"\x21\xfe" + bytes([len(TAG)]) + TAG.encode() + b"\x00"  # a GIF comment extension block


class OutputError(ValueError):
    """An output that may not be written or replaced; the message names the paths involved."""


def _absolute(path: str | Path) -> Path:
    """`path` made absolute and normalised (`~` expanded), symbolic links left as they are."""
    return Path(os.path.abspath(os.path.expanduser(str(path))))


def check_location(target: str | Path, inputs: Iterable[str | Path] = ()) -> Path:
    """Refuse an output location that could destroy an input or the current folder; returns `target`.

    Raises `OutputError` when `target` is one of `inputs`, holds one of them (is an ancestor folder),
    is the current working folder or an ancestor of it, or has a parent that is a file.
    """
    target = Path(target)
    resolved = _absolute(target).resolve()
    cwd = Path.cwd().resolve()
    for source in inputs:
        source_resolved = _absolute(source).resolve()
        if source_resolved == resolved:
            raise OutputError(f"output {str(target)!r} is the input {str(source)!r}; choose another output")
        if resolved in source_resolved.parents:
            raise OutputError(
                f"output {str(target)!r} holds the input {str(source)!r}; choose an output outside the input's folder"
            )
    if resolved == cwd or resolved in cwd.parents:
        raise OutputError(
            f"output {str(target)!r} is the current folder {str(cwd)!r} or one of its ancestors; name a new "
            "file or folder inside it instead"
        )
    for parent in _absolute(target).parents:
        if parent.exists():
            if not parent.is_dir():
                raise OutputError(f"output {str(target)!r} cannot be created: {str(parent)!r} is a file, not a folder")
            break
    return target


def existing_ancestor(path: str | Path) -> Path:
    """The nearest existing folder at or above `path` (where its disk space comes from)."""
    for candidate in (_absolute(path), *_absolute(path).parents):
        if candidate.is_dir():
            return candidate
    return Path(os.sep)


def read_manifest(folder: Path) -> list[str] | None:
    """The file names a previous run recorded in `folder`, or None when it has no valid manifest."""
    try:
        record = json.loads((folder / MANIFEST).read_text())
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


def _foreign_entries(folder: Path) -> list[str]:
    """Entries of `folder` its manifest does not list (all of them when it has no manifest)."""
    listed = read_manifest(folder)
    owned = set() if listed is None else {*listed, MANIFEST}
    return sorted(entry.name for entry in os.scandir(folder) if entry.name not in owned or entry.is_dir(follow_symlinks=False))


def _gif_tag_offset(head: bytes) -> int | None:
    """Where this tool's comment block sits in a GIF: right after the header, the logical screen
    descriptor and the global colour table (before any frame, so demuxers see no extra frame)."""
    if len(head) < 13 or head[:6] not in (b"GIF87a", b"GIF89a"):
        return None
    flags = head[10]
    return 13 + (3 * 2 ** ((flags & 0x07) + 1) if flags & 0x80 else 0)


def is_tagged(path: str | Path) -> bool:
    """Whether the file `path` carries this tool's tag (container `comment` metadata, or the GIF comment)."""
    path = Path(path)
    if not path.is_file():
        return False
    if path.suffix.lower() == ".gif":
        with open(path, "rb") as f:
            head = f.read(13 + 768 + len(GIF_TAG))
        offset = _gif_tag_offset(head)
        return offset is not None and head[offset : offset + len(GIF_TAG)] == GIF_TAG
    import av

    try:
        with av.open(str(path)) as container:
            metadata = {k.lower(): v for k, v in container.metadata.items()}
    except (av.error.FFmpegError, OSError, UnicodeDecodeError):
        return False
    return metadata.get("comment") == TAG


def tag_gif(path: str | Path) -> None:
    """Insert this tool's comment block into a finished GIF, before its first frame."""
    path = Path(path)
    data = path.read_bytes()
    offset = _gif_tag_offset(data)
    if offset is None or len(data) < offset:
        raise RuntimeError(f"{str(path)!r} is not a GIF")
    path.write_bytes(data[:offset] + GIF_TAG + data[offset:])


def check_replaceable(target: str | Path, overwrite: bool) -> None:
    """Raise `OutputError` unless `target` is absent, or `overwrite` is set and `target` is ours.

    Ours: a folder whose every entry is listed in its manifest, or a tagged file. An empty folder is
    taken as absent.
    """
    target = Path(target)
    if not os.path.lexists(target):
        return
    if target.is_dir() and not target.is_symlink() and not any(os.scandir(target)):
        return  # an empty folder: nothing in it can be lost
    if not overwrite:
        raise OutputError(f"output {str(target)!r} already exists (pass --overwrite to replace an earlier output of videoanyup)")
    if target.is_symlink():
        raise OutputError(f"output {str(target)!r} is a symbolic link; videoanyup replaces only what it wrote")
    if target.is_dir():
        foreign = _foreign_entries(target)
        if foreign:
            why = "it has no videoanyup manifest" if read_manifest(target) is None else "its videoanyup manifest does not list it"
            raise OutputError(
                f"--overwrite replaces only what videoanyup wrote, and folder {str(target)!r} holds "
                f"{str(target / foreign[0])!r} ({why}; {len(foreign)} such entr{'y' if len(foreign) == 1 else 'ies'}); "
                "remove them yourself or choose another output"
            )
        return
    if not is_tagged(target):
        raise OutputError(
            f"--overwrite replaces only what videoanyup wrote, and {str(target)!r} was not written by it "
            "(no videoanyup tag); remove it yourself or choose another output"
        )


def temporary_path(target: str | Path, *, folder: bool) -> Path:
    """Create a hidden, empty temporary file or folder next to `target`, with the umask's permissions.

    File: `.NAME.RANDOM.partial.SUFFIX` (the suffix kept, so writers can pick the format); folder:
    `.NAME.RANDOM.partial`. The caller renames it onto `target` (`put_in_place`) or removes it.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(100):
        token = secrets.token_hex(4)
        if folder:
            path = target.parent / f".{target.name}.{token}.partial"
            try:
                os.mkdir(path, 0o777)  # the umask applies
            except FileExistsError:
                continue
        else:
            path = target.parent / f".{target.stem}.{token}.partial{target.suffix}"
            try:
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))  # the umask applies
            except FileExistsError:
                continue
        return path
    raise OutputError(f"cannot create a temporary output next to {str(target)!r}")


def remove_temporary(tmp: Path | None) -> None:
    """Remove a temporary output created by `temporary_path` (and what the run put in it)."""
    if tmp is None or not os.path.lexists(tmp):
        return
    if tmp.is_dir() and not tmp.is_symlink():
        for entry in os.scandir(tmp):
            if entry.is_dir(follow_symlinks=False):
                remove_temporary(Path(entry.path))
            else:
                os.unlink(entry.path)
        os.rmdir(tmp)
    else:
        os.unlink(tmp)


@contextlib.contextmanager
def _signals_deferred() -> Iterator[None]:
    """Hold SIGINT and SIGTERM back for the block (main thread, POSIX); they are delivered after it."""
    mask = getattr(signal, "pthread_sigmask", None)
    if mask is None or threading.current_thread() is not threading.main_thread():
        yield
        return
    held = {signal.SIGINT, signal.SIGTERM}
    previous = mask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        mask(signal.SIG_SETMASK, previous)


def put_in_place(tmp: Path, target: str | Path) -> None:
    """Rename the finished `tmp` onto `target`, replacing what `check_replaceable` allowed.

    A file target is replaced atomically (`os.replace`). An old folder is first checked again, renamed
    aside, then emptied of the names its manifest lists and removed; anything else found in it is left
    there, with a warning naming the folder.
    """
    target = Path(target)
    if not os.path.lexists(target) or not target.is_dir():
        if target.is_file() and tmp.is_dir():
            check_replaceable(target, True)
            os.unlink(target)
        os.replace(tmp, target)
        return
    check_replaceable(target, True)  # again: the folder may have changed during the run
    aside = target.parent / f".{target.name}.{secrets.token_hex(4)}.old"
    with _signals_deferred():  # Ctrl-C / SIGTERM between the two renames would leave no output at `target`
        os.replace(target, aside)
        try:
            os.replace(tmp, target)
        except BaseException:
            os.replace(aside, target)
            raise
    for name in (read_manifest(aside) or []) + [MANIFEST]:
        path = aside / name
        if os.path.lexists(path) and not path.is_dir():
            os.unlink(path)
    try:
        os.rmdir(aside)
    except OSError:
        log.warning("the previous output was replaced; files videoanyup did not write were kept in %s", aside)
