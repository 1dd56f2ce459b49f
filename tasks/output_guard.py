"""The writer of every `videoanyup` command: where an output may go, what it may replace, how it appears.

Every file and folder a command writes (videos, frames, JSON, figures, manifests, feature folders) goes
through this module, under one rule: **a command never changes or deletes a file it did not write, and an
output appears whole or not at all.** How to write an output:

```python
from videoanyup.tasks import output_guard

# before any work: the same checks the writers make (cheap; the work may then take hours)
output_guard.check_output(path, folder=False, overwrite=args.overwrite, inputs=[source])
...
output_guard.write_json(path, {"format": "videoanyup-mytool/1", ...}, overwrite=..., inputs=[source])
output_guard.write_text(path, text, ...)                 # any text file
output_guard.save_figure(figure, path, ...)              # a matplotlib figure (PNG: tagged as ours)
with output_guard.output_file(path, ...) as tmp:         # any other file: fill `tmp`, it becomes `path`
    write_my_format(tmp)
with output_guard.output_folder(path, ...) as tmp:       # a flat folder: fill `tmp`, it becomes `path`
    (tmp / "a.png").write_bytes(...)
```

- **Location** (`check_location`): the output may not be an input, hold an input, be the current folder
  or one of its ancestors, or sit below a file.
- **Ownership** (`check_replaceable`): an existing output is replaced only with `overwrite`, and only when
  this tool wrote it: a file carrying its mark (`output_tags`: container comment, GIF comment, PNG text
  chunk, JSON `"format": "videoanyup…"`, or a caller's `owned` test), or a folder whose every entry is
  listed in its manifest `MANIFEST` (`{"format": …, "files": [names]}`, written by `output_folder`). An
  empty folder counts as absent. Anything else raises `OutputError` naming the foreign file.
- **Early checks** (`check_output`): location, ownership, a name the file system accepts, a writable
  and not read-only location, and the free space against the caller's estimate (`needed_bytes`).
- **Atomic appearance**: the output is built in a hidden temporary next to the target, whose name fits
  the file system's limit (`.NAME.XXXXXXXX.partial[.suffix]`, NAME shortened when needed), with the
  permissions of the user's umask. When the block succeeds, ownership is checked **again** (a file or
  folder may have appeared during the run) and the temporary is renamed onto the target; a file that
  appeared meanwhile is never replaced unless it is ours and `overwrite` is set. An old folder is moved
  aside and emptied of the names its manifest lists only; SIGINT / SIGTERM wait while the renames run.
- **Existing folders keep their mode and owner**: an existing empty folder (or a mount point) is filled
  in place, never replaced; a replaced folder or file passes its mode and owner to the new one.
- **Failure**: the temporary is removed, and so are the folders this output created above it; the
  previous output is left as it was.
- **Errors of the system** (permission, read-only, no space, name too long, busy) become an `OutputError`
  with one line naming the path and the cause (`output_errors.describe`).

Outputs that grow over time (a dataset of features) use `output_lock`: one run at a time, records
appended whole, log files. Every refusal is an `OutputError`, a `ValueError`: exit status 2.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import secrets
import signal
import stat
import threading
from pathlib import Path
from typing import Callable, Iterable, Iterator

from videoanyup.tasks.output_errors import WRITE_ERRORS, OutputError, check_can_write, check_free_space, describe
from videoanyup.tasks.output_errors import existing_ancestor, name_max  # noqa: F401 - part of this module's API
from videoanyup.tasks.output_tags import GIF_TAG, PNG_METADATA, TAG, is_ours_json, is_tagged, tag_gif  # noqa: F401

log = logging.getLogger(__name__)

MANIFEST = ".videoanyup-output.json"
MANIFEST_FORMAT = "videoanyup-output/1"
TEMPORARY = re.compile(r"^\.(?P<name>.*)\.(?P<token>[0-9a-f]{8})\.(?P<kind>partial|old)(?P<suffix>\.[^.]*)?$")  # names of temporaries and set-aside folders
Owned = Callable[[Path], bool]


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


def _foreign_entries(folder: Path, ignore: Iterable[str] = ()) -> list[str]:
    """Entries of `folder` its manifest does not list (all of them when it has no manifest), but `ignore`."""
    listed = read_manifest(folder)
    owned = {*(listed or ()), *ignore} | ({MANIFEST} if listed is not None else set())
    return sorted(entry.name for entry in os.scandir(folder)
                  if entry.name not in owned or (entry.name not in ignore and entry.is_dir(follow_symlinks=False)))


def _is_empty_folder(path: Path) -> bool:
    return path.is_dir() and not path.is_symlink() and not any(os.scandir(path))


def check_replaceable(target: str | Path, overwrite: bool, owned: Owned | None = None) -> None:
    """Raise `OutputError` unless `target` is absent, or `overwrite` is set and `target` is ours.

    Ours: a folder whose every entry is listed in its manifest, or a file that `owned` accepts (default:
    a file carrying this tool's mark, `output_tags.is_tagged`). An empty folder is taken as absent.
    """
    target = Path(target)
    if not os.path.lexists(target) or _is_empty_folder(target):
        return
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
    if not (owned or is_tagged)(target):
        raise OutputError(
            f"--overwrite replaces only what videoanyup wrote, and {str(target)!r} was not written by it "
            "(no videoanyup tag); remove it yourself or choose another output"
        )


@contextlib.contextmanager
def _as_output_error(target: Path, tmp: Path | None = None) -> Iterator[None]:
    """Turn an `OSError` of writing (permission, read-only, no space, …) into a one-line `OutputError` naming
    `target`; errors about other paths (an input) pass unchanged."""
    try:
        yield
    except OSError as error:
        where = Path(os.fsdecode(error.filename)) if isinstance(error.filename, (str, bytes, os.PathLike)) else None
        where = None if where is None else _absolute(where)
        ours = where is None or where == _absolute(target) or where in _absolute(target).parents or (
            tmp is not None and _absolute(tmp) in (where, *where.parents))
        if error.errno not in WRITE_ERRORS or not ours:
            raise
        raise OutputError(describe(error, target)) from error


def check_output(
    target: str | Path,
    *,
    folder: bool,
    overwrite: bool = False,
    inputs: Iterable[str | Path] = (),
    needed_bytes: int = 0,
    owned: Owned | None = None,
) -> Path:
    """Every check an output meets before any work; returns `target`. Raises `OutputError`.

    Location (`check_location`), ownership (`check_replaceable`), a file target that is a folder (or
    the reverse), a name the file system accepts, a location that is writable and not read-only, and
    `needed_bytes` (the caller's estimate of the output's size) against the free space.
    """
    target = Path(target)
    check_location(target, inputs)
    if not folder and target.is_dir() and not target.is_symlink():
        raise OutputError(f"output {str(target)!r} is a folder; name a file (this output is a single file)")
    check_replaceable(target, overwrite, owned)
    with _as_output_error(target):
        check_can_write(target / MANIFEST if folder and target.is_dir() else target)  # a folder may be filled in place
        if needed_bytes > 0:
            check_free_space(target, needed_bytes)
    return target


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


def put_in_place(tmp: Path, target: str | Path) -> None:
    """Rename the finished `tmp` onto `target`, replacing what `check_replaceable` allowed.

    A file target is replaced atomically (`os.replace`). An existing empty folder receives the entries of
    `tmp` and is kept (its mode, owner and mount with it). An old non-empty folder is first checked again,
    renamed aside, then emptied of the names its manifest lists and removed; anything else found in it is
    left there, with a warning naming the folder. A replaced file or folder passes its mode and owner on.
    """
    target = Path(target)
    if tmp.parent == target:  # a temporary inside the target: an empty folder or a mount point, filled in place
        _fill_in_place(tmp, target)
        return
    if not os.path.lexists(target) or not target.is_dir() or target.is_symlink():
        if os.path.lexists(target):
            check_replaceable(target, True)
            if not target.is_symlink() and target.is_dir() == tmp.is_dir():
                _adopt_mode_and_owner(target, tmp)
            if tmp.is_dir():
                os.unlink(target)
        os.replace(tmp, target)
        return
    if not any(os.scandir(target)):  # an empty folder (a user's, perhaps created during the run): kept
        _fill_in_place_from(tmp, target)
        return
    check_replaceable(target, True)  # again: the folder may have changed during the run
    if not _adopt_mode_and_owner(target, tmp) or os.path.ismount(target):
        _fill_in_place_from(tmp, target)
        return
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


def _fill_in_place_from(tmp: Path, target: Path) -> None:
    """`_fill_in_place` for a temporary next to `target`, after checking that `target` holds only its own files."""
    check_replaceable(target, True)
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


class _Output:
    """One output on its way: checked when made, built in a hidden temporary (`begin`), put in place
    (`commit`) or removed with the folders it created (`abort`)."""

    def __init__(self, target, *, folder, overwrite, inputs, needed_bytes, owned) -> None:
        self.target, self.folder, self.overwrite, self.owned = Path(target), folder, overwrite, owned
        check_output(self.target, folder=folder, overwrite=overwrite, inputs=inputs, needed_bytes=needed_bytes, owned=owned)
        self.existed = os.path.lexists(self.target)
        self.in_place = folder and self.target.is_dir() and not self.target.is_symlink() and (
            _is_empty_folder(self.target) or os.path.ismount(self.target))
        self.created: list[Path] = []
        self.tmp: Path | None = None

    def begin(self) -> Path:
        try:
            with _as_output_error(self.target):
                _make_parents(_absolute(self.target).parent, self.created)
                self.tmp = temporary_path(self.target, folder=self.folder, inside=self.in_place)
        except BaseException:
            self.abort()
            raise
        return self.tmp

    def _check_again(self) -> None:
        """Ownership once more, just before the rename: the target may have appeared or changed meanwhile."""
        try:
            if self.in_place:
                foreign = _foreign_entries(self.target, ignore=[self.tmp.name])
                if foreign or (read_manifest(self.target) is not None and not self.overwrite):
                    raise OutputError(f"folder {str(self.target)!r} now holds {str(self.target / (foreign or [MANIFEST])[0])!r}")
            else:
                check_replaceable(self.target, self.overwrite, self.owned)
        except OutputError as error:
            when = "was changed" if self.existed else "appeared"
            raise OutputError(f"{error} — it {when} while this run was writing; it is kept and this run's output "
                              "was discarded") from None

    def commit(self) -> None:
        with _as_output_error(self.target, self.tmp):
            if self.folder:
                write_manifest(self.tmp)
                self._check_again()
                put_in_place(self.tmp, self.target)
            else:
                self._commit_file()
        self.tmp = None

    def _commit_file(self) -> None:
        """Link the finished file to an absent target (no window: the link fails if a file appeared), else
        check again and replace."""
        with _signals_deferred():
            if not os.path.lexists(self.target):
                try:
                    os.link(self.tmp, self.target)
                except OSError:  # a file appeared (EEXIST), or no hard links here (FAT, some network file systems)
                    pass
                else:
                    os.unlink(self.tmp)
                    return
            self._check_again()
            if os.path.lexists(self.target) and not self.target.is_symlink():
                _adopt_mode_and_owner(self.target, self.tmp)
            os.replace(self.tmp, self.target)

    def abort(self) -> None:
        try:
            remove_temporary(self.tmp)
        finally:
            self.tmp = None
            _remove_created(self.created)


@contextlib.contextmanager
def _output(target, *, folder, overwrite, inputs, needed_bytes, owned) -> Iterator[Path]:
    output = _Output(target, folder=folder, overwrite=overwrite, inputs=inputs, needed_bytes=needed_bytes, owned=owned)
    tmp = output.begin()
    try:
        with _as_output_error(output.target, tmp):
            yield tmp
        output.commit()
    except BaseException:
        output.abort()
        raise


def output_file(target: str | Path, *, overwrite: bool = False, inputs: Iterable[str | Path] = (), needed_bytes: int = 0,
                owned: Owned | None = None) -> contextlib.AbstractContextManager[Path]:
    """A context yielding an empty hidden temporary file (suffix kept) that becomes `target` when the block
    succeeds; see the module notes for the checks (made at once) and what a failure leaves (nothing).

    `owned(path)` decides whether an existing file is ours when its kind carries no mark (default: the mark).
    """
    return _output(target, folder=False, overwrite=overwrite, inputs=inputs, needed_bytes=needed_bytes, owned=owned)


def output_folder(target: str | Path, *, overwrite: bool = False, inputs: Iterable[str | Path] = (),
                  needed_bytes: int = 0) -> contextlib.AbstractContextManager[Path]:
    """A context yielding an empty hidden temporary folder that becomes the folder `target`, with its
    manifest, when the block succeeds. The folder must be flat (files only)."""
    return _output(target, folder=True, overwrite=overwrite, inputs=inputs, needed_bytes=needed_bytes, owned=None)


def write_text(target: str | Path, text: str, *, overwrite: bool = False, inputs: Iterable[str | Path] = (),
               owned: Owned | None = None) -> Path:
    """Write `text` to `target` through `output_file`; returns `target`."""
    with output_file(target, overwrite=overwrite, inputs=inputs, needed_bytes=len(text.encode()), owned=owned) as tmp:
        tmp.write_text(text)
    return Path(target)


def write_json(target: str | Path, data: dict, *, overwrite: bool = False, inputs: Iterable[str | Path] = ()) -> Path:
    """Write `data`, an object with `"format": "videoanyup…"` (its mark of ownership), as indented JSON."""
    if not is_ours_json(data):
        raise ValueError(f"JSON outputs carry \"format\": \"{TAG}-…\" at the top (their ownership mark); got keys {list(data)[:5]}")
    return write_text(target, json.dumps(data, indent=2) + "\n", overwrite=overwrite, inputs=inputs)


def save_figure(figure, target: str | Path, *, overwrite: bool = False, inputs: Iterable[str | Path] = ()) -> Path:
    """Save a matplotlib figure to `target` (its suffix picks the format; a PNG carries this tool's mark)."""
    target = Path(target)
    with output_file(target, overwrite=overwrite, inputs=inputs) as tmp:
        png = target.suffix.lower() == ".png"
        figure.savefig(tmp, **({"metadata": PNG_METADATA} if png else {}))
    return target
