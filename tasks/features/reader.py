"""Reading features back: one video's frames (memory-mapped) and a torch `Dataset` over a dataset output.

    from videoanyup.tasks.features import FeatureDataset, load_features
    hr = load_features("out", video="bmx-trees", frames=slice(10, 20))  # (10, C, H, W) float16, memory-mapped
    data = FeatureDataset("out", clip_frames=8)      # items {"video", "start", "stop", "features": (8, C, H, W)}
    loader = DataLoader(data, sampler=DistributedSampler(data), batch_size=4, num_workers=4)

`load_features` reads a single-video output (`OUT/index.json`) or, with `video=`, one video of a dataset
output (`OUT/videos/<video>/`, listed as done in `OUT/manifest.jsonl`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from videoanyup.tasks.features import shards
from videoanyup.tasks.features.manifest import SETTINGS_FILE, VIDEOS_DIR, read_manifest


def finished_videos(out: str | Path) -> dict[str, dict]:
    """The videos of the dataset output `out` that are done: name → manifest line (sorted by name)."""
    out = Path(out)
    if not (out / SETTINGS_FILE).is_file():
        raise ValueError(f"{str(out)!r} is not the output of `videoanyup features DATASET` (it has no {SETTINGS_FILE})")
    return {name: line for name, line in sorted(read_manifest(out).items()) if line["status"] == "done"}


def video_folder(out: str | Path, video: str) -> Path:
    """The folder of one finished video of a dataset output; `ValueError` naming the finished ones."""
    done = finished_videos(out)
    if video not in done:
        known = ", ".join(list(done)[:10]) + (", …" if len(done) > 10 else "")
        raise ValueError(f"video={video!r} is not a finished video of {str(out)!r} (finished: {known or 'none'})")
    return Path(out) / VIDEOS_DIR / video


def load_features(folder: str | Path, frames: slice | None = None, *, video: str | None = None) -> np.ndarray:
    """Features `(n, C, H, W)` float16 of frames `frames` (a slice; None: all) of one video, memory-mapped.

    Args:
        folder: a single-video output, or a dataset output with `video` naming one of its videos.
        frames: a slice of 0 … T−1 (see `shards.load_features`: a slice inside one shard is a view of it).
        video: the video's name in a dataset output (its file stem or folder name).
    """
    folder = Path(folder)
    if video is None:
        if not (folder / shards.INDEX_FILE).is_file() and (folder / SETTINGS_FILE).is_file():
            names = list(finished_videos(folder))
            raise ValueError(f"{str(folder)!r} holds a dataset: pass video= one of {', '.join(names[:10]) or 'none'}")
        return shards.load_features(folder, frames)
    return shards.load_features(video_folder(folder, video), frames)


class FeatureDataset(Dataset):
    """(video, frame range) items of a dataset output, for a training loop.

    Items are `{"video": name, "start": s, "stop": e, "features": (e − s, C, H, W) float16 tensor}`, in a
    fixed order (videos by name, then by start), so a `DistributedSampler` splits them the same way on
    every rank. Only the index dicts are held; shards are memory-mapped when an item is read, so the
    dataset pickles small into DataLoader workers and DDP processes.

    Args:
        out: a dataset output of `videoanyup features`.
        clip_frames: frames per item (None: one item per whole video); videos shorter than that give none.
        stride: frames between the starts of consecutive items of a video (default `clip_frames`).
        videos: restrict to these video names (default: every finished video).
    """

    def __init__(self, out: str | Path, *, clip_frames: int | None = None, stride: int | None = None,
                 videos: list[str] | None = None) -> None:
        for value, name in ((clip_frames, "clip_frames"), (stride, "stride")):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be a positive integer or None, got {value!r}")
        if stride is not None and clip_frames is None:
            raise ValueError("stride needs clip_frames (without it each item is a whole video)")
        self.out = Path(out)
        done = finished_videos(self.out)
        names = list(done) if videos is None else list(videos)
        missing = [name for name in names if name not in done]
        if missing:
            raise ValueError(f"videos {missing} are not finished videos of {str(self.out)!r}")
        self.items: list[tuple[str, int, int]] = []
        for name in names:
            total = shards.read_index(self.out / VIDEOS_DIR / name)["frames"]  # the folder's own count (what is read)
            if clip_frames is None:
                self.items.append((name, 0, total))
            else:
                step = stride or clip_frames
                self.items += [(name, s, s + clip_frames) for s in range(0, total - clip_frames + 1, step)]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        name, start, stop = self.items[i]
        array = shards.load_features(self.out / VIDEOS_DIR / name, slice(start, stop))  # (n, C, H, W) float16
        return {"video": name, "start": start, "stop": stop, "features": torch.from_numpy(np.array(array))}
