"""The bookkeeping of a dataset output: settings, per-video ownership and completeness, the manifest.

    OUT/features.json           the run's settings (backbone, upsampler, their hashes, size, …); written by rank 0
    OUT/manifest.jsonl          one line per finished or failed video; rank 0 merges it at the end
    OUT/.manifest.rank<r>.jsonl rank r's lines of the running job, appended (and synced) one per video
    OUT/videos/<name>/          one video's shards and index.json (`shards.py` layout, plus `dataset`, `video`,
                                `settings`, `rank`, `seconds`)
    OUT/logs/rank<r>.log        what rank r did

A manifest line: `video`, `path` (absolute), `status` ("done" or "failed"), `rank` (the rank that handled it
in the latest run), `backbone`, `backbone_hash`, `upsampler`, `upsampler_hash`; a finished video adds
`folder`, `frames`, `shape`, `dtype`, `seconds` and `written_by_rank` (from its index) and `resumed` (true:
found complete and skipped); a failed one adds `error` ("Type: message") and `seconds`.

A video folder belongs to this tool when its `index.json` carries `"dataset": DATASET_FORMAT`; only such
folders (and the files above) are ever replaced or removed. A video is complete when its folder belongs to
this tool, its index has this run's settings, its frame count and source, and all its shards exist; a
rerun skips complete videos and redoes the others. The manifest is derived data: a line per video that
finished or failed in some run, the newest line winning.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from pathlib import Path

import torch

from videoanyup.tasks.features.shards import FORMAT, INDEX_FILE

log = logging.getLogger(__name__)

DATASET_FORMAT = "videoanyup-features-dataset/1"
SETTINGS_FILE = "features.json"
MANIFEST_FILE = "manifest.jsonl"
VIDEOS_DIR = "videos"
LOGS_DIR = "logs"
# what decides the numbers in the shards: changing any of these in an existing OUT is refused (or --overwrite)
SETTING_KEYS = ("backbone", "backbone_hash", "upsampler", "upsampler_hash", "size", "short_side", "mode",
                "precision", "save_lr")


def state_hash(module: torch.nn.Module | None) -> str | None:
    """A short SHA-256 of a module's state (names, dtypes, shapes and values); None for no module."""
    if module is None:
        return None
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        tensor = tensor.detach().cpu().contiguous().reshape(-1)  # (n,): 0-d tensors cannot be viewed as bytes
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)};".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()[:16]


def normalise(settings: dict) -> dict:
    """`settings` as they read back from JSON (tuples become lists), restricted to `SETTING_KEYS`."""
    return json.loads(json.dumps({key: settings.get(key) for key in SETTING_KEYS}))


def part_file(out: Path, rank: int) -> Path:
    return Path(out) / f".manifest.rank{rank}.jsonl"


def append_record(path: Path, record: dict) -> None:
    """Append one JSON line and sync it, so a killed run keeps every line it wrote."""
    with open(path, "a") as file:
        file.write(json.dumps(record) + "\n")
        file.flush()
        os.fsync(file.fileno())


def _read_lines(path: Path) -> list[dict]:
    records = []
    if not path.is_file():
        return records
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:  # a line torn by a kill
            log.warning("%s:%d is not JSON; ignored", path, number)
    return records


def read_manifest(out: str | Path) -> dict[str, dict]:
    """The manifest of the dataset output `out`: video name → its line (newest wins)."""
    return {record["video"]: record for record in _read_lines(Path(out) / MANIFEST_FILE) if "video" in record}


def merge_manifest(out: str | Path) -> dict[str, dict]:
    """Fold the per-rank files into `manifest.jsonl` (atomically, sorted by name) and remove them."""
    out = Path(out)
    records = read_manifest(out)
    parts = sorted(out.glob(".manifest.rank*.jsonl"), key=lambda p: int(p.name[len(".manifest.rank") : -len(".jsonl")]))
    for part in parts:
        for record in _read_lines(part):
            records[record["video"]] = record
    tmp = out / f".{MANIFEST_FILE}.tmp"
    tmp.write_text("".join(json.dumps(records[name]) + "\n" for name in sorted(records)))
    os.replace(tmp, out / MANIFEST_FILE)
    for part in parts:
        part.unlink()
    return records


def read_settings(out: str | Path) -> dict | None:
    """The settings recorded in `out/features.json`; None when there is none. `ValueError` when the file
    is not this tool's."""
    path = Path(out) / SETTINGS_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{str(path)!r} is not JSON: it was not written by `videoanyup features`") from error
    if not isinstance(data, dict) or data.get("format") != DATASET_FORMAT:
        raise ValueError(f"{str(path)!r} was not written by `videoanyup features` (format {DATASET_FORMAT!r})")
    return data["settings"]


def write_settings(out: Path, settings: dict, **extra) -> None:
    tmp = Path(out) / f".{SETTINGS_FILE}.tmp"
    tmp.write_text(json.dumps({"format": DATASET_FORMAT, "settings": normalise(settings)} | extra, indent=2) + "\n")
    os.replace(tmp, Path(out) / SETTINGS_FILE)


def changed_settings(out: str | Path, settings: dict) -> list[str]:
    """The setting keys on which `out`'s recorded settings differ from `settings` (empty: same or none)."""
    old = read_settings(out)
    if old is None:
        return []
    new = normalise(settings)
    return [key for key in SETTING_KEYS if old.get(key) != new[key]]


def check_settings(out: str | Path, settings: dict, *, overwrite: bool) -> list[str]:
    """Refuse (ValueError) an existing output made with other settings unless `overwrite`; returns the
    changed keys."""
    changed = changed_settings(out, settings)
    if changed and not overwrite:
        old = read_settings(out)
        described = "; ".join(f"{key}: {old.get(key)!r} there, {normalise(settings)[key]!r} now" for key in changed)
        raise ValueError(
            f"output {str(out)!r} holds features made with other settings ({described}); use another -o, or pass "
            "--overwrite to replace what `videoanyup features` wrote there"
        )
    return changed


def read_video_index(folder: Path) -> dict | None:
    """The index of a video folder if this tool's dataset command wrote it, else None."""
    path = folder / INDEX_FILE
    if not path.is_file():
        return None
    try:
        index = json.loads(path.read_text())
    except (json.JSONDecodeError, OSError):
        return None
    if not isinstance(index, dict) or index.get("format") != FORMAT or index.get("dataset") != DATASET_FORMAT:
        return None
    return index


def is_complete(index: dict | None, folder: Path, *, settings: dict, frames: int, source: str) -> bool:
    """Whether a video folder with `index` holds this run's features of all `frames` frames of `source`."""
    return (
        index is not None
        and index.get("settings") == normalise(settings)
        and index.get("frames") == frames
        and index.get("source") == source
        and all((folder / shard["file"]).is_file() for shard in index.get("shards", []))
        and (index.get("lr") is None or (folder / index["lr"]).is_file())
    )


def remove_stale_partials(videos: Path, name: str) -> None:
    """Remove the hidden `.name.*.partial` folders a killed run left for video `name` (`shards.partial_folder`)."""
    for stale in videos.glob(f".{name}.*.partial"):
        if stale.is_dir() and not stale.is_symlink():
            log.info("removing %s, left by an interrupted run", stale)
            shutil.rmtree(stale, ignore_errors=True)


def remove_owned_outputs(out: Path) -> list[str]:
    """Before an --overwrite with changed settings: remove the video folders this tool wrote (their index
    says so), the manifest and the settings; foreign files stay. Returns the names removed."""
    removed = []
    videos = out / VIDEOS_DIR
    if videos.is_dir():
        for folder in sorted(videos.iterdir()):
            if folder.is_dir() and not folder.is_symlink() and read_video_index(folder) is not None:
                shutil.rmtree(folder)
                removed.append(folder.name)
    for name in (MANIFEST_FILE, SETTINGS_FILE):
        if (out / name).is_file():
            (out / name).unlink()
    for part in out.glob(".manifest.rank*.jsonl"):
        part.unlink()
    return removed
