"""The on-disk layout of `videoanyup features`: fp16 `.npy` shards plus `index.json`, written atomically.

    OUT/features_00000.npy   (n, C, H, W) float16: frames 0 … n−1 of the clip
    OUT/features_00001.npy   the next `shard_frames` frames, …
    OUT/lr.npy               (T, C, h, w) float16: the backbone's own features (optional)
    OUT/index.json           what is where (format, shapes, frame ranges, provenance); written last

`partial_folder` builds everything in a hidden `.OUT.*.partial` folder next to OUT and renames it to OUT
only after `index.json` is in place (`output_guard.output_folder`), so a failed or killed run never leaves
a folder that looks finished. `ShardWriter` fills memory-mapped shards frame chunk by frame chunk, so no
shard is ever held in memory; each shard's blocks are reserved on disk when it is created, so a full disk
is an `OSError` (ENOSPC) there rather than a crash while the memory map is written.
`load_features` memory-maps the shards back and returns the frames asked for.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
from pathlib import Path
from typing import Iterator

import numpy as np

from videoanyup.tasks import output_guard

FORMAT = "videoanyup-features/1"
INDEX_FILE = "index.json"
LR_FILE = "lr.npy"
DTYPE = np.float16


def shard_name(number: int) -> str:
    return f"features_{number:05d}.npy"


@contextlib.contextmanager
def partial_folder(target: str | Path, *, overwrite: bool = False, inputs: tuple[str | Path, ...] = (),
                   needed_bytes: int = 0) -> Iterator[Path]:
    """A hidden temporary folder next to `target` that replaces `target` when the block succeeds
    (`output_guard.output_folder`), once `index.json` is written in it.

    Raises `ValueError` up front when `target` exists and `overwrite` is false, or when `target` is not
    an earlier output of this tool (`output_guard`: a folder holding only what its manifest lists), is
    the current folder or an ancestor of it, or is or holds one of `inputs`, or when its disk has less
    than `needed_bytes` free; on any error the temporary folder is removed and `target` is left as it was.
    """
    with output_guard.output_folder(target, overwrite=overwrite, inputs=inputs, needed_bytes=needed_bytes) as tmp:
        yield tmp
        if not (tmp / INDEX_FILE).is_file():
            raise RuntimeError(f"{INDEX_FILE} must be written before the output is put in place")


def reserve(path: Path) -> None:
    """Allocate the blocks of the file `path` now (`posix_fallocate`), so that a full disk raises ENOSPC here
    and not later, as a bus error, while a memory map of the file is written. Where the system cannot
    reserve blocks, nothing is done."""
    allocate = getattr(os, "posix_fallocate", None)
    if allocate is None:
        return
    fd = os.open(path, os.O_RDWR)
    try:
        allocate(fd, 0, os.fstat(fd).st_size)
    except OSError as error:
        if error.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
            raise OSError(error.errno, error.strerror, str(path)) from error
    finally:
        os.close(fd)


def write_index(folder: Path, index: dict) -> None:
    """Write `index.json` atomically (temporary file, then rename)."""
    tmp = folder / f".{INDEX_FILE}.tmp"
    tmp.write_text(json.dumps(index, indent=2) + "\n")
    os.replace(tmp, folder / INDEX_FILE)


class ShardWriter:
    """Writes consecutive frames `(n, C, H, W)` into float16 shards of `shard_frames` frames.

    Each shard is a memory-mapped `.npy` file (`np.lib.format.open_memmap`), filled as frames arrive and
    flushed and closed when full, so memory holds no more than the caller's chunk.

    Args:
        folder: where the shards go.
        frames: T, the clip's frame count; frame_shape: `(C, H, W)`; shard_frames: frames per shard.
    """

    def __init__(self, folder: Path, *, frames: int, frame_shape: tuple[int, int, int], shard_frames: int) -> None:
        self.folder, self.frame_shape = Path(folder), tuple(frame_shape)
        self.bounds = [(s, min(frames, s + shard_frames)) for s in range(0, frames, shard_frames)]
        self.written = 0  # frames written so far
        self._shard = -1
        self._array: np.memmap | None = None

    def write(self, frames: np.ndarray) -> None:
        """Append `(n, C, H, W)` frames (any float dtype; stored as float16)."""
        if frames.ndim != 4 or tuple(frames.shape[1:]) != self.frame_shape:
            raise ValueError(f"frames must be (n, C, H, W) = (n, {', '.join(map(str, self.frame_shape))}), got {frames.shape}")
        if self.written + len(frames) > self.bounds[-1][1]:
            raise ValueError(f"{self.written + len(frames)} frames written, the clip has {self.bounds[-1][1]}")
        offset = 0
        while offset < len(frames):
            if self._array is None:
                self._shard += 1
                start, stop = self.bounds[self._shard]
                path = self.folder / shard_name(self._shard)
                self._array = np.lib.format.open_memmap(path, mode="w+", dtype=DTYPE, shape=(stop - start, *self.frame_shape))
                reserve(path)
            start, stop = self.bounds[self._shard]
            n = min(len(frames) - offset, stop - self.written)
            self._array[self.written - start : self.written - start + n] = frames[offset : offset + n]
            offset += n
            self.written += n
            if self.written == stop:
                self._array.flush()
                self._array = None

    def shards(self) -> list[dict]:
        """The index entries `{"file", "start", "stop"}` (frames start ≤ t < stop); all frames must be written."""
        if self.written != self.bounds[-1][1]:
            raise RuntimeError(f"only {self.written} of {self.bounds[-1][1]} frames were written")
        return [{"file": shard_name(i), "start": a, "stop": b} for i, (a, b) in enumerate(self.bounds)]


def read_index(folder: str | Path) -> dict:
    """The `index.json` of a features folder; `ValueError` if it is not a finished features folder."""
    path = Path(folder) / INDEX_FILE
    if not path.is_file():
        raise ValueError(
            f"{str(folder)!r} has no {INDEX_FILE}: it is not the output of `videoanyup features` (or the run did not finish)"
        )
    index = json.loads(path.read_text())
    if index.get("format") != FORMAT:
        raise ValueError(f"{str(path)!r} has format {index.get('format')!r}, expected {FORMAT!r}")
    return index


def load_features(folder: str | Path, frames: slice | None = None) -> np.ndarray:
    """Upsampled features of frames `frames` (a slice of 0 … T−1; None: all) as `(n, C, H, W)` float16.

    The shards are memory-mapped: a slice with step 1 inside one shard comes back as a read-only view of
    the file (nothing is read until it is used); a selection that spans shards is copied into memory.
    """
    if frames is not None and not isinstance(frames, slice):
        raise ValueError(f"frames must be a slice (e.g. slice(10, 20)) or None, got {frames!r}")
    folder = Path(folder)
    index = read_index(folder)
    total, frame_shape = index["frames"], tuple(index["shape"][1:])
    wanted = np.arange(total)[frames if frames is not None else slice(None)]  # frame indices, monotonic
    starts = np.array([s["start"] for s in index["shards"]])
    owner = np.searchsorted(starts, wanted, side="right") - 1  # shard of each wanted frame
    order = np.unique(owner)
    if len(wanted) > 1 and wanted[0] > wanted[-1]:  # a negative step walks the shards backwards
        order = order[::-1]
    pieces = []
    for number in order:
        shard = index["shards"][number]
        array = np.load(folder / shard["file"], mmap_mode="r")
        if array.shape != (shard["stop"] - shard["start"], *frame_shape) or array.dtype != DTYPE:
            raise ValueError(f"{str(folder / shard['file'])!r} holds {array.dtype} {array.shape}, the index says otherwise")
        local = wanted[owner == number] - shard["start"]
        step = int(local[1] - local[0]) if len(local) > 1 else 1
        if step == 1:
            pieces.append(array[local[0] : local[-1] + 1])
        else:
            pieces.append(array[local])
    if not pieces:
        return np.empty((0, *frame_shape), dtype=DTYPE)
    return pieces[0] if len(pieces) == 1 else np.concatenate(pieces)


def load_lr(folder: str | Path) -> np.ndarray:
    """The backbone's features `(T, C, h, w)` float16 (memory-mapped), when the run kept them (--save-lr)."""
    index = read_index(folder)
    if not index.get("lr"):
        raise ValueError(f"{str(folder)!r} holds no LR features: run `videoanyup features` with --save-lr")
    return np.load(Path(folder) / index["lr"], mmap_mode="r")
