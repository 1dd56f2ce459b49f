"""The bookkeeping of a dataset output: settings, per-video ownership and completeness, the manifest.

    OUT/features.json           the run's settings (backbone, upsampler, their hashes, size, …); written by rank 0
    OUT/manifest.jsonl          one line per finished or failed video, appended whole (and synced) by the rank
                                that did it the moment it is done; rank 0 compacts it (newest line per video,
                                sorted) at the start and the end of a run
    OUT/videos/<name>/          one video's shards and index.json (`shards.py` layout, plus `dataset`, `video`,
                                `settings`, `rank`, `seconds`)
    OUT/logs/rank<r>.log        what rank r did
    OUT/.videoanyup.lock        held by the running job (`output_lock.exclusive`): one run at a time
    OUT/.manifest.jsonl.lock    guards the appends to and the compaction of the manifest

A manifest line: `video`, `path` (absolute), `status` ("done" or "failed"), `rank` (the rank that handled it
in the latest run), `backbone`, `backbone_hash`, `upsampler`, `upsampler_hash`; a finished video adds
`folder`, `frames`, `shape`, `dtype`, `seconds` and `written_by_rank` (from its index) and `resumed` (true:
found complete and skipped); a failed one adds `error` ("Type: message") and `seconds`. A video that fails
while its earlier complete folder (same settings) survives keeps its "done" line, which gains
`rerun_error`: the manifest says what the disk holds.

A video folder belongs to this tool when its `index.json` carries `"dataset": DATASET_FORMAT`; only such
folders (and the files above) are ever replaced or removed. A video is complete when its folder belongs to
this tool, its index has this run's settings, its frame count and source, and all its shards exist; a
rerun skips complete videos and redoes the others.

The manifest is the truth at every moment: a "done" line is appended only once its folder is in place,
and removed (the manifest emptied) before `--overwrite` removes folders, so readers (`load_features`,
`FeatureDataset`) see every finished video, during a run and after a kill, and never a missing one. OUT
is a new or empty folder or an earlier output of this command (`check_dataset_output`); `--overwrite`
with changed settings removes only the files that each video's index lists (and the folder, if nothing
else is left in it).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

import torch

from videoanyup.tasks import output_guard, output_lock
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


def append_record(out: str | Path, record: dict) -> None:
    """Append one video's line to the manifest, whole and synced, so readers and a killed run keep it."""
    output_lock.append_line(Path(out) / MANIFEST_FILE, json.dumps(record))


def is_manifest_file(path: Path) -> bool:
    """Whether `path` reads as a manifest of this command (every line a video's record; a torn last line
    allowed): the ownership test for rewriting it."""
    try:
        lines = [line for line in Path(path).read_text().splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError):
        return False
    for number, line in enumerate(lines, 1):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            if number == len(lines):
                continue  # the line a kill tore
            return False
        if not isinstance(record, dict) or not {"video", "status"} <= set(record):
            return False
    return True


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


def _legacy_parts(out: Path) -> list[Path]:
    """Per-rank files `.manifest.rank<r>.jsonl` that a killed run of an earlier version left."""
    return sorted(out.glob(".manifest.rank*.jsonl"), key=lambda p: p.name)


def merge_manifest(out: str | Path) -> dict[str, dict]:
    """Compact `manifest.jsonl` to its newest line per video, sorted by name (atomically, while no line is
    being appended), folding in the per-rank files of an earlier version; returns the records."""
    out = Path(out)
    manifest = out / MANIFEST_FILE
    with output_lock.locked(manifest):
        records = read_manifest(out)
        parts = _legacy_parts(out)
        for part in parts:
            for record in _read_lines(part):
                if "video" in record:
                    records[record["video"]] = record
        text = "".join(json.dumps(records[name]) + "\n" for name in sorted(records))
        output_guard.write_text(manifest, text, overwrite=True, owned=is_manifest_file)
        output_guard.remove_listed(out, [part.name for part in parts], remove_folder=False)
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
    output_guard.write_json(Path(out) / SETTINGS_FILE, {"format": DATASET_FORMAT, "settings": normalise(settings)} | extra,
                            overwrite=True)


def check_dataset_output(out: str | Path, inputs=()) -> None:
    """Refuse (`OutputError`) an OUT that is not a new or empty folder, nor an earlier output of this command
    (one with its `features.json`), or whose location could destroy an input (`output_guard.check_location`)."""
    out = Path(out)
    output_guard.check_location(out, inputs)
    if not os.path.lexists(out):
        return
    if out.is_symlink() or not out.is_dir():
        raise output_guard.OutputError(f"-o {str(out)!r} exists and is not a folder")
    if read_settings(out) is not None:
        return  # ours: resumed, or refused by `check_settings`
    ours = {output_lock.LOCK_FILE, output_lock.lock_file_of(out / MANIFEST_FILE).name}
    foreign = sorted(entry.name for entry in os.scandir(out) if entry.name not in ours)
    if foreign:
        raise output_guard.OutputError(
            f"-o {str(out)!r} holds {str(out / foreign[0])!r} ({len(foreign)} entr{'y' if len(foreign) == 1 else 'ies'} "
            "in all) and is not an earlier output of `videoanyup features` (it has no features.json); use a new or "
            "empty folder"
        )


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


def is_intact(index: dict | None, folder: Path, *, settings: dict) -> bool:
    """Whether a video folder still holds a complete output of `settings` (whatever its source is now)."""
    return (
        index is not None
        and index.get("settings") == normalise(settings)
        and all((folder / shard["file"]).is_file() for shard in index.get("shards", []))
        and (index.get("lr") is None or (folder / index["lr"]).is_file())
    )


def remove_stale_partials(videos: Path, name: str) -> None:
    """Remove the hidden temporary folders a killed run left for video `name` (`shards.partial_folder`)."""
    stale = set(output_guard.stale_temporaries(videos / name)) | set(videos.glob(f".{name}.*.partial"))
    for path in sorted(stale):
        if path.is_dir() and not path.is_symlink():
            log.info("removing %s, left by an interrupted run", path)
            output_guard.remove_temporary(path)


def _listed_files(index: dict) -> list[str]:
    """The files a video folder's index names: its shards, its LR features, the index, the folder's manifest."""
    names = [shard["file"] for shard in index.get("shards", []) if isinstance(shard, dict) and "file" in shard]
    names += [index["lr"]] if isinstance(index.get("lr"), str) else []
    return [name for name in names if "/" not in name and name not in ("", ".", "..")] + [INDEX_FILE, output_guard.MANIFEST]


def remove_owned_outputs(out: Path) -> list[str]:
    """Before an --overwrite with changed settings: empty the manifest (so no reader is pointed at a folder
    about to go), then remove from each video folder this tool wrote the files its index lists, and the
    folder when nothing else is left in it; anything else stays, with a warning. Returns the videos emptied."""
    removed = []
    if (out / MANIFEST_FILE).exists():
        with output_lock.locked(out / MANIFEST_FILE):
            output_guard.write_text(out / MANIFEST_FILE, "", overwrite=True, owned=is_manifest_file)
    output_guard.remove_listed(out, [part.name for part in _legacy_parts(out)], remove_folder=False)
    videos = out / VIDEOS_DIR
    if videos.is_dir():
        for folder in sorted(videos.iterdir()):
            index = read_video_index(folder) if folder.is_dir() and not folder.is_symlink() else None
            if index is None:
                continue
            left = output_guard.remove_listed(folder, _listed_files(index))
            if left:
                log.warning("%s: kept, with the files videoanyup did not write (%s)", folder, ", ".join(left[:5]))
            removed.append(folder.name)
    return removed
