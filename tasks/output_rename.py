"""How a finished output takes its place: hidden temporaries, the renames, and what a failure leaves.

`output_guard` decides what may be written and replaced; this module moves the files. An output is built
in a temporary (`temporary_path`): `.NAME.XXXXXXXX.partial[.suffix]` next to the target, its NAME
shortened when the whole would exceed the file system's limit on names, or `.videoanyup.XXXXXXXX.partial`
inside an existing folder that is filled in place. `put_in_place` then makes it the target:

- nothing there: one rename;
- a file (ours): one rename over it, after the new file takes the old one's mode and owner;
- an empty folder or a mount point: the new entries move into it, so the folder itself (its mode, owner,
  ACLs, mount) stays; the manifest moves last;
- a folder of ours: the new folder takes its mode and owner and the two are exchanged atomically
  (`renameat2(RENAME_EXCHANGE)` on Linux; elsewhere two renames, with SIGINT / SIGTERM held between them),
  then the old one is emptied of the names its manifest lists only and removed — or kept, with a warning,
  if anything else is found in it. When the owner cannot be passed on, the entries move in instead.

`_make_parents` creates the missing folders above a target and remembers them, so that a failure removes
them again (`_remove_created`); `stale_temporaries` finds the temporaries that a killed run left.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import logging
import os
import re
import secrets
import signal
import stat
import threading
from pathlib import Path
from typing import Callable, Iterator

from videoanyup.tasks.output_errors import OutputError, name_max
from videoanyup.tasks.output_tags import MANIFEST, TAG, read_manifest

log = logging.getLogger(__name__)

Check = Callable[[Path], None]  # raises OutputError unless the existing path may be replaced


TEMPORARY = re.compile(r"^\.(?P<name>.*)\.(?P<token>[0-9a-f]{8})\.(?P<kind>partial|old)(?P<suffix>\.[^.]*)?$")  # names of temporaries and set-aside folders


def _temporary_name(target: Path, token: str, kind: str, *, keep_suffix: bool) -> str:
    """`.NAME.TOKEN.KIND[.suffix]`, with NAME shortened (whole characters) so that it fits the file system."""
    name, suffix = (target.stem, target.suffix) if keep_suffix else (target.name, "")
    limit = name_max(target.parent)
    room = limit - len(os.fsencode(f"..{token}.{kind}{suffix}"))
    encoded = os.fsencode(name)
    if len(encoded) > room:
        name = encoded[: max(room, 0)].decode("utf-8", "ignore") if room > 0 else ""
    return f".{name}.{token}.{kind}{suffix}"


def is_temporary_of(name: str, target: str | Path) -> bool:
    """Whether the entry `name` of the target's folder is a temporary (or set-aside folder) of `target`."""
    target = Path(target)
    match = TEMPORARY.match(name)
    if match is None:
        return False
    stem, suffix = match["name"], match["suffix"] or ""
    if (stem, suffix) in ((target.name, ""), (target.stem, target.suffix)):
        return True
    shortened = len(os.fsencode(name)) > name_max(target.parent) - 4  # `_temporary_name` cut NAME to fit
    return shortened and bool(stem) and target.name.startswith(stem)


def stale_temporaries(target: str | Path) -> list[Path]:
    """Hidden temporaries of `target` that runs killed without clean-up left next to it (SIGKILL, power loss)."""
    target = Path(target)
    if not target.parent.is_dir():
        return []
    return sorted(target.parent / entry.name for entry in os.scandir(target.parent)
                  if TEMPORARY.match(entry.name) and TEMPORARY.match(entry.name)["kind"] == "partial"
                  and is_temporary_of(entry.name, target))


def temporary_path(target: str | Path, *, folder: bool, inside: bool = False) -> Path:
    """Create a hidden, empty temporary file or folder next to `target` (or, `inside`, in the folder
    `target` itself), with the umask's permissions; its name fits the file system's limit.

    File: `.NAME.RANDOM.partial.SUFFIX` (the suffix kept, so writers can pick the format); folder:
    `.NAME.RANDOM.partial`. The caller renames it onto `target` (`put_in_place`) or removes it.
    """
    target = Path(target)
    where = target if inside else target.parent
    where.mkdir(parents=True, exist_ok=True)
    for _ in range(100):
        token = secrets.token_hex(4)
        name = (f".{TAG}.{token}.partial" if inside else _temporary_name(target, token, "partial", keep_suffix=not folder))
        path = where / name
        try:
            if folder:
                os.mkdir(path, 0o777)  # the umask applies
            else:
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


_RENAME_EXCHANGE = 2  # linux/fs.h
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Swap the paths `a` and `b` in one step (Linux `renameat2(RENAME_EXCHANGE)`); False where unavailable."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError, TypeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.EXDEV):
        return False
    raise OSError(code, os.strerror(code), str(b))


def _adopt_mode_and_owner(old: Path, new: Path) -> bool:
    """Give `new` the permission bits, owner and group of `old`; False when the system refuses the owner."""
    info = old.stat()
    os.chmod(new, stat.S_IMODE(info.st_mode))
    mine = new.stat()
    if (mine.st_uid, mine.st_gid) != (info.st_uid, info.st_gid):
        try:
            os.chown(new, info.st_uid, info.st_gid)
        except PermissionError:
            return False
    return True


def _fill_in_place(tmp: Path, target: Path) -> None:
    """Move the entries of the finished folder `tmp` into the existing folder `target` (kept, with its mode,
    owner and mount), replacing the names its manifest lists; the manifest moves last."""
    old = set(read_manifest(target) or ())
    new = [entry.name for entry in os.scandir(tmp) if entry.name != MANIFEST]
    with _signals_deferred():
        for name in new:
            os.replace(tmp / name, target / name)
        for name in sorted(old - set(new)):
            path = target / name
            if os.path.lexists(path) and not path.is_dir():
                os.unlink(path)
        os.replace(tmp / MANIFEST, target / MANIFEST)
    os.rmdir(tmp)


def put_in_place(tmp: Path, target: str | Path, check_replaceable: Check, *, retry: bool = True) -> None:
    """Rename the finished `tmp` onto `target`, replacing only what `check_replaceable` allows (it raises
    otherwise); it is called on whatever is at `target` just before it is replaced.

    A file target is replaced atomically (`os.replace`). An existing empty folder receives the entries of
    `tmp` and is kept (its mode, owner and mount with it). An old non-empty folder is first checked again,
    renamed aside, then emptied of the names its manifest lists and removed; anything else found in it is
    left there, with a warning naming the folder. A replaced file or folder passes its mode and owner on.
    A folder that appears at `target` between the checks and the rename is checked in turn.
    """
    target = Path(target)
    if tmp.parent == target:  # a temporary inside the target: an empty folder or a mount point, filled in place
        _fill_in_place(tmp, target)
        return
    if not os.path.lexists(target) or not target.is_dir() or target.is_symlink():
        unlink_first = False  # a folder replacing a file
        if os.path.lexists(target):
            check_replaceable(target)
            if not target.is_symlink() and target.is_dir() == tmp.is_dir():
                _adopt_mode_and_owner(target, tmp)
            unlink_first = tmp.is_dir()
        try:
            if unlink_first:
                with contextlib.suppress(FileNotFoundError):  # removed meanwhile
                    os.unlink(target)  # EISDIR: a folder replaced the file meanwhile, checked below
            os.replace(tmp, target)
        except OSError as error:  # a folder appeared meanwhile (or a file, where a folder goes): check it
            if not retry or error.errno not in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR, errno.EISDIR):
                raise
            put_in_place(tmp, target, check_replaceable, retry=False)
        return
    if not any(os.scandir(target)):  # an empty folder (a user's, perhaps created during the run): kept
        _fill_in_place_from(tmp, target, check_replaceable)
        return
    check_replaceable(target)  # again: the folder may have changed during the run
    if not _adopt_mode_and_owner(target, tmp) or os.path.ismount(target):
        _fill_in_place_from(tmp, target, check_replaceable)
        return
    if _exchange(tmp, target):  # one step: readers see the old folder or the new one, never none
        aside = tmp.parent / _temporary_name(target, secrets.token_hex(4), "old", keep_suffix=False)
        os.replace(tmp, aside)  # `tmp` now names the old folder
    else:
        aside = target.parent / _temporary_name(target, secrets.token_hex(4), "old", keep_suffix=False)
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


def _fill_in_place_from(tmp: Path, target: Path, check_replaceable: Check) -> None:
    """`_fill_in_place` for a temporary next to `target`, after checking that `target` holds only its own files."""
    check_replaceable(target)
    _fill_in_place(tmp, target)


def _make_parents(folder: Path, created: list[Path]) -> None:
    """Create `folder` and its missing ancestors (umask permissions), appending each one created to `created`
    (outermost first) as it goes, so a failure half-way still knows what to remove."""
    for path in [p for p in (folder, *folder.parents) if not os.path.lexists(p)][::-1]:
        try:
            os.mkdir(path, 0o777)
        except FileExistsError:
            continue
        created.append(path)


def _remove_created(created: list[Path]) -> None:
    """Remove the folders an output created, innermost first, as long as they are empty."""
    for path in reversed(created):
        try:
            os.rmdir(path)
        except OSError:
            return
