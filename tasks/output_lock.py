"""Output folders that grow over time: one run at a time, records appended whole, log files.

A dataset output (`videoanyup features DATASET -o OUT`) is not built in one temporary folder and renamed:
it grows video by video, across runs and across the processes of one run. Three tools keep it whole:

- `exclusive(folder, what)`: an advisory lock (`fcntl.flock`) on `folder/LOCK_FILE`, held by one process
  for the whole run. A second run fails at once with `OutputInUse`, naming the first run's process id,
  host and start time (written into the lock file). The system drops the lock when the process ends,
  however it ends (SIGKILL included), so a killed run never blocks the next one.
- `append_line(path, line)`: appends one line with a single `write`, then `fsync`, holding `locked(path)`
  (a lock on the sibling file `.NAME.lock`), so concurrent writers never interleave and a kill leaves at
  most a torn last line, which readers skip. `locked(path)` also guards a rewrite of the whole file.
- `log_handler(path)`: a `logging.FileHandler` appending to `path` (never through a symbolic link).

Where `fcntl` is missing (Windows) or the file system refuses locks, the run goes on unlocked, with a warning.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import socket
import time
from pathlib import Path
from typing import Iterator

from videoanyup.tasks.output_errors import OutputError

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

log = logging.getLogger(__name__)

LOCK_FILE = ".videoanyup.lock"
NO_LOCKS = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL)


class OutputInUse(OutputError):
    """Another run holds the output's lock; the message names its process."""


def lock_file_of(path: str | Path) -> Path:
    """The sibling lock file that `locked(path)` holds: `.NAME.lock`."""
    path = Path(path)
    return path.parent / f".{path.name}.lock"


def _flock(fd: int, operation: int) -> bool:
    """`flock`; False (with a warning) when locks are not available here."""
    if fcntl is None:
        log.warning("file locks are not available on this system; concurrent runs are not detected")
        return False
    try:
        fcntl.flock(fd, operation)
    except OSError as error:
        if error.errno not in NO_LOCKS:
            raise
        log.warning("this file system refuses locks (%s); concurrent runs are not detected", os.strerror(error.errno))
        return False
    return True


def _holder(fd: int) -> str:
    try:
        record = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
    except (ValueError, OSError):
        record = {}
    if not isinstance(record, dict) or "pid" not in record:
        return "process unknown"
    return f"pid {record['pid']} on {record.get('host', '?')}, started {record.get('started', '?')}"


@contextlib.contextmanager
def exclusive(folder: str | Path, what: str) -> Iterator[Path]:
    """Hold the lock of `folder` (which must exist) for the block; `OutputInUse` at once if another run holds it.

    `what` names the output in the message, e.g. "output folder". Yields the lock file's path.
    """
    path = Path(folder) / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o666)
    try:
        try:
            locked = _flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB) if fcntl is not None else _flock(fd, 0)
        except BlockingIOError:
            raise OutputInUse(
                f"{what} {str(folder)!r} is being written by another run ({_holder(fd)}); wait for it to end, "
                "or choose another output"
            ) from None
        if locked:
            record = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(record).encode(), 0)
        yield path
    finally:
        os.close(fd)  # drops the lock; the file stays for the next run


@contextlib.contextmanager
def locked(path: str | Path) -> Iterator[None]:
    """Hold the lock that guards appends to and rewrites of `path` (its sibling `.NAME.lock`), waiting for it."""
    fd = os.open(lock_file_of(path), os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o666)
    try:
        if fcntl is not None:
            _flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def append_line(path: str | Path, line: str) -> None:
    """Append `line` (one line of text, no newline in it) to `path` whole, and sync it to disk."""
    if "\n" in line:
        raise ValueError("append_line writes one line: the text must hold no newline")
    path = Path(path)
    with locked(path):
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o666)
        try:
            data = (line + "\n").encode()
            if os.write(fd, data) != len(data):
                raise OSError(errno.EIO, "short write", str(path))
            os.fsync(fd)
        finally:
            os.close(fd)


def log_handler(path: str | Path, formatter: logging.Formatter | None = None) -> logging.FileHandler:
    """A handler appending to the log file `path` (its folder is created; a symbolic link there is refused)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_symlink() or (path.exists() and not path.is_file()):
        raise OutputError(f"log file {str(path)!r} is not a regular file; videoanyup does not write through it")
    handler = logging.FileHandler(path, mode="a", encoding="utf-8")
    if formatter is not None:
        handler.setFormatter(formatter)
    return handler
