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

The parts: this module (the rule and the API), `output_tags` (ownership marks of files, manifests of
folders), `output_rename` (temporaries and renames), `output_errors` (system errors, early checks),
`output_lock` (outputs that grow). Commands import `output_guard` only (`output_lock` for growing ones).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from pathlib import Path
from typing import Callable, Iterable, Iterator

from videoanyup.tasks import output_rename
from videoanyup.tasks.output_errors import WRITE_ERRORS, OutputError, check_can_write, check_free_space, describe
from videoanyup.tasks.output_errors import existing_ancestor, free_bytes, name_max  # noqa: F401 - part of the API
from videoanyup.tasks.output_rename import TEMPORARY, is_temporary_of, remove_temporary, stale_temporaries  # noqa: F401
from videoanyup.tasks.output_rename import _adopt_mode_and_owner, _make_parents, _remove_created, _signals_deferred
from videoanyup.tasks.output_rename import temporary_path  # noqa: F401 - part of the API
from videoanyup.tasks.output_tags import GIF_TAG, MANIFEST, MANIFEST_FORMAT, PNG_METADATA, TAG  # noqa: F401
from videoanyup.tasks.output_tags import foreign_entries, is_ours_json, is_tagged, read_manifest, tag_gif, write_manifest  # noqa: F401

log = logging.getLogger(__name__)

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
        foreign = foreign_entries(target)
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


def make_folders(folder: str | Path) -> list[Path]:
    """Create the folder `folder` and its missing ancestors (umask permissions) for an output that grows in
    place (`output_lock`); returns those created, outermost first, for `remove_folders`."""
    created: list[Path] = []
    with _as_output_error(Path(folder)):
        _make_parents(_absolute(folder), created)
    return created


def remove_folders(created: list[Path]) -> None:
    """Remove folders `make_folders` created, innermost first, as long as they are empty."""
    _remove_created(created)


def remove_listed(folder: str | Path, names: Iterable[str], *, remove_folder: bool = True) -> list[str]:
    """Remove the files `names` of `folder` that this tool recorded as its own (an index, a manifest), never
    a folder or anything else; then the folder itself when `remove_folder` and nothing is left in it.
    Returns the names of the entries left in `folder` (empty when it was removed)."""
    folder = Path(folder)
    for name in names:
        path = folder / name
        if "/" not in name and name not in ("", ".", "..") and os.path.lexists(path) and not path.is_dir():
            os.unlink(path)
    left = sorted(entry.name for entry in os.scandir(folder))
    if remove_folder and not left:
        os.rmdir(folder)
    return left


def put_in_place(tmp: Path, target: str | Path) -> None:
    """Make the finished temporary `tmp` the output `target` (`output_rename.put_in_place`), checking an
    existing target again with `check_replaceable(target, True)` just before it is replaced."""
    output_rename.put_in_place(tmp, target, lambda path: check_replaceable(path, True))


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
                foreign = foreign_entries(self.target, ignore=[self.tmp.name])
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
                output_rename.put_in_place(self.tmp, self.target, lambda path: self._check_again())
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
