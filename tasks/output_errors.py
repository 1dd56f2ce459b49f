"""Errors of the operating system as one line naming the path and the cause, and the checks that find them early.

`describe(error, path)` turns an `OSError` into one sentence: the path, the cause in words (permission
denied, read-only file system, no space left, name too long, busy, …) and, for a full disk, how much is
free. `output_guard` raises it as an `OutputError`, and the command line prints any other `OSError` the
same way, so no command ends in a traceback because of the file system.

Before any work, `check_can_write` finds what can be found without writing: a name longer than the file
system allows, a read-only file system, a folder this user may not write into, and an output larger than
the free space (`check_free_space`, with the caller's estimate of its size).
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

CAUSES = {
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EROFS: "read-only file system",
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "disk quota exceeded",
    errno.ENAMETOOLONG: "name too long",
    errno.EBUSY: "busy (a mount point, or in use)",
    errno.EFBIG: "file too large for this file system",
    errno.EIO: "input/output error",
    errno.ENOENT: "no such file or folder",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.EISDIR: "is a folder",
    errno.EEXIST: "already exists",
    errno.ENOTEMPTY: "folder not empty",
    errno.EXDEV: "on another file system",
    errno.ELOOP: "too many symbolic links",
}


class OutputError(ValueError):
    """An output that may not be written or replaced, or that the system refused; the message names the paths
    (a `ValueError`, so the command line prints it as one line and exits with status 2)."""


WRITE_ERRORS = frozenset({errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.ENAMETOOLONG,
                          errno.EBUSY, errno.EFBIG, errno.EIO})


def _absolute(path: str | Path) -> Path:
    return Path(os.path.abspath(os.path.expanduser(str(path))))


def existing_ancestor(path: str | Path) -> Path:
    """The nearest existing folder at or above `path` (where its disk space comes from)."""
    for candidate in (_absolute(path), *_absolute(path).parents):
        if candidate.is_dir():
            return candidate
    return Path(os.sep)


def free_bytes(path: str | Path) -> int:
    """Bytes free for this user on the file system that would hold `path`."""
    return shutil.disk_usage(existing_ancestor(path)).free


def gigabytes(count: float) -> str:
    return f"{count / 1e9:.3g} GB"


def name_max(folder: str | Path) -> int:
    """The longest file name (bytes) the file system of `folder` accepts (255 where it cannot tell)."""
    try:
        return int(os.pathconf(existing_ancestor(folder), "PC_NAME_MAX"))
    except (OSError, ValueError, AttributeError):
        return 255


def describe(error: OSError, path: str | Path | None = None) -> str:
    """One line: what could not be done to which path, and why (the cause in words and the system's text)."""
    where = path if path is not None else error.filename
    cause = CAUSES.get(error.errno or -1, error.strerror or type(error).__name__)
    detail = f" ({error.strerror})" if error.strerror and error.strerror.lower() != cause else ""
    if error.errno in (errno.ENOSPC, errno.EDQUOT) and where is not None and "free" not in (error.strerror or ""):
        detail += f"; {gigabytes(free_bytes(where))} free there now"
    if error.errno == errno.ENAMETOOLONG and where is not None:
        detail += f"; this file system allows names of {name_max(Path(where).parent)} bytes"
    if error.filename is not None and where is not None and os.fsdecode(error.filename) != str(where):
        detail += f" at {os.fsdecode(error.filename)!r}"
    if where is None:
        return f"{cause}{detail}"
    return f"cannot write {str(where)!r}: {cause}{detail}"


def check_free_space(target: str | Path, needed: int, what: str = "the output") -> None:
    """`OSError(ENOSPC)` naming `target` when its file system has fewer than `needed` bytes free."""
    free = free_bytes(target)
    if needed > free:
        raise OSError(
            errno.ENOSPC,
            f"{what} needs about {gigabytes(needed)} and {gigabytes(free)} is free",
            str(target),
        )


def check_can_write(target: str | Path) -> None:
    """Raise the `OSError` that writing `target` would meet, found without writing: a name component longer
    than the file system allows (ENAMETOOLONG), a read-only file system (EROFS), or a folder this user may
    not write into (EACCES)."""
    target = _absolute(target)
    folder = existing_ancestor(target.parent)
    limit = name_max(folder)
    for part in target.relative_to(folder).parts:
        if len(os.fsencode(part)) > limit:
            raise OSError(errno.ENAMETOOLONG, f"the name {part[:40]!r}… is {len(os.fsencode(part))} bytes, above "
                          f"the limit of {limit}", str(target))
    try:
        read_only = bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except (OSError, AttributeError):
        read_only = False
    if read_only:
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(folder))
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OSError(errno.EACCES, os.strerror(errno.EACCES), str(folder))
