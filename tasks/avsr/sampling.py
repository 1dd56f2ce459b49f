"""Resumable, distributed sampling of training clips.

All randomness of the training data lives here: `ClipBatchSampler` turns `(seed, epoch)` into the whole
epoch's plan — which clip and start frame, temporal reversal, flips, crop position, and per batch the scales
`(a, b)` and the supervised HR sub-crop — and hands each data worker a `ClipRequest` that fully determines
its sample. Workers therefore need no random state, and any batch of any epoch can be rebuilt exactly.

`ResumableLoader` wraps a `DataLoader` over those requests with Lightning's `state_dict` /
`load_state_dict` interface, so a checkpoint taken mid-epoch resumes at the next unseen batch. Its workers
persist from epoch to epoch (no restart, no second decoding of the videos a worker caches), and the videos
a dataset keeps decoded are decoded once in the main process before the workers start, which share them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import torch
from torch.utils.data import DataLoader, Dataset

from videoanyup.tasks.avsr.sources import Clip


@dataclass(frozen=True)
class ClipRequest:
    """Everything one training sample depends on.

    `hr_crop = (Hc, Wc)` is the HR crop taken at `(top, left)` of frames `start … start + T − 1` of clip
    `clip`; it is downsampled to `lr_patch`; `region = (top, bottom, left, right)` is the supervised part
    of the `(Hc, Wc)` output (the same for the whole batch).
    """

    clip: int
    start: int
    top: int
    left: int
    reverse: bool
    hflip: bool
    vflip: bool
    hr_crop: tuple[int, int]
    lr_patch: tuple[int, int]
    region: tuple[int, int, int, int]


def seeded_generator(*keys: int) -> torch.Generator:
    """A CPU generator seeded from integer keys (seed, epoch, …), independent of global RNG state."""
    seed = 0
    for key in keys:
        seed = (seed * 1_000_003 + int(key) + 1) % (2**63 - 1)
    return torch.Generator().manual_seed(seed)


def _uniform(g: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand((), generator=g, dtype=torch.float64))


def _randint(g: torch.Generator, high: int) -> int:
    """Uniform in [0, high]."""
    return int(torch.randint(0, high + 1, (), generator=g))


class ClipBatchSampler:
    """Batches of `ClipRequest`s for one process of a (possibly distributed) run.

    An epoch has `samples_per_epoch` samples (default: one per clip), in a random order of the clips
    repeated as needed; each global step takes `batch_size` samples per process, the last partial step is
    dropped. Scales and the supervised region are shared by all samples of a step (the network takes one
    scale per call), on every process.

    Args:
        clips: the training clips.
        num_frames: T, frames per sample.
        lr_patch: side of the square LR patch.
        gt_patch: side of the supervised HR sub-crop (at most `round(lr_patch · scale)`).
        scale_range: `(min, max)`; `a` and `b` are drawn independently and uniformly.
        batch_size: samples per process and step.
        seed: the run's seed.
        samples_per_epoch: samples per epoch over all processes (default: the number of clips).
        reverse, flip: probabilities of temporal reversal and of each of horizontal / vertical flips.
        rank, world_size: this process and the number of processes.
    """

    def __init__(
        self,
        clips: Sequence[Clip],
        *,
        num_frames: int,
        lr_patch: int,
        gt_patch: int,
        scale_range: tuple[float, float],
        batch_size: int,
        seed: int,
        samples_per_epoch: int | None = None,
        reverse: float = 0.5,
        flip: float = 0.5,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        low, high = scale_range
        if not 1.0 <= low <= high:
            raise ValueError(f"scale_range={scale_range} must satisfy 1 <= min <= max")
        if gt_patch > round(lr_patch * low):
            raise ValueError(f"gt_patch={gt_patch} must be <= round(lr_patch * min scale) = {round(lr_patch * low)}")
        max_crop = math.floor(lr_patch * high + 0.5)
        for clip in clips:
            if clip.num_frames < num_frames:
                raise ValueError(f"clip {clip.path} has {clip.num_frames} frames, fewer than num_frames={num_frames}")
            if clip.height < max_crop or clip.width < max_crop:
                raise ValueError(
                    f"clip {clip.path} is {clip.height}×{clip.width}, smaller than the largest HR crop {max_crop}×{max_crop} "
                    f"(lr_patch={lr_patch} × scale_range max {high}): lower lr_patch or the scale range"
                )
        self.clips = list(clips)
        self.num_frames, self.lr_patch, self.gt_patch = num_frames, lr_patch, gt_patch
        self.scale_range, self.batch_size, self.seed = (low, high), batch_size, seed
        self.samples_per_epoch = samples_per_epoch or len(self.clips)
        self.reverse, self.flip = reverse, flip
        self.rank, self.world_size = rank, world_size
        self.epoch = 0
        self.skip = 0  # batches of the current epoch to leave out on the next iteration (resume)
        if len(self) == 0:
            raise ValueError(
                f"samples_per_epoch={self.samples_per_epoch} gives no full batch of batch_size={batch_size} "
                f"on {world_size} process(es)"
            )

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.samples_per_epoch // (self.batch_size * self.world_size)

    def epoch_plan(self, epoch: int) -> list[list[ClipRequest]]:
        """This process's batches of `epoch` (a pure function of seed, epoch, rank and world size)."""
        g = seeded_generator(self.seed, epoch)
        repeats = math.ceil(self.samples_per_epoch / len(self.clips))
        order = torch.cat([torch.randperm(len(self.clips), generator=g) for _ in range(repeats)])[: self.samples_per_epoch]
        step_size = self.batch_size * self.world_size
        batches = []
        for step in range(len(self)):
            gs = seeded_generator(self.seed, epoch, step)
            a, b = (_uniform(gs, *self.scale_range) for _ in range(2))
            crop = (math.floor(self.lr_patch * a + 0.5), math.floor(self.lr_patch * b + 0.5))
            top, left = _randint(gs, crop[0] - self.gt_patch), _randint(gs, crop[1] - self.gt_patch)
            region = (top, top + self.gt_patch, left, left + self.gt_patch)
            requests = []
            for slot in range(step_size):
                clip_index = int(order[step * step_size + slot])
                clip = self.clips[clip_index]
                gi = seeded_generator(self.seed, epoch, step, slot, 7)
                draws = torch.rand(3, generator=gi, dtype=torch.float64)
                requests.append(
                    ClipRequest(
                        clip=clip_index,
                        start=_randint(gi, clip.num_frames - self.num_frames),
                        top=_randint(gi, clip.height - crop[0]),
                        left=_randint(gi, clip.width - crop[1]),
                        reverse=bool(draws[0] < self.reverse),
                        hflip=bool(draws[1] < self.flip),
                        vflip=bool(draws[2] < self.flip),
                        hr_crop=crop,
                        lr_patch=(self.lr_patch, self.lr_patch),
                        region=region,
                    )
                )
            batches.append(requests[self.rank * self.batch_size : (self.rank + 1) * self.batch_size])
        return batches

    def __iter__(self) -> Iterator[list[ClipRequest]]:
        skip, self.skip = self.skip, 0
        yield from self.epoch_plan(self.epoch)[skip:]


class ResumableLoader:
    """A `DataLoader` over a `ClipBatchSampler` that remembers how far into the epoch training got.

    Lightning saves `state_dict()` in mid-epoch checkpoints and calls `load_state_dict()` before it
    iterates again. Lightning's fit loop fetches nothing ahead from a loader with a length (it only
    prefetches to find the last batch of unsized ones), so the batches yielded are the batches trained on;
    `LOOP_PREFETCH` would correct for a loop that did (the resume test pins this).

    With workers, one `DataLoader` serves every epoch and its workers persist (`persistent_workers`): a new
    epoch neither restarts them (seconds each) nor makes them decode their cached videos again. Before the
    workers start, the dataset's `preload()` (if it has one) runs in this process, so the workers, forked
    from it, share what it decoded instead of each stalling a step on it.

    Args:
        dataset: maps a `ClipRequest` to a sample.
        batch_sampler: the epoch plan.
        num_workers, pin_memory: as in `DataLoader`.
        persistent_workers: keep the workers between epochs (default: when there are workers).
    """

    LOOP_PREFETCH = 0  # batches Lightning's fit loop fetches ahead of the one it trains on (sized loader)

    def __init__(
        self, dataset: Dataset, batch_sampler: ClipBatchSampler, *, num_workers: int = 0, pin_memory: bool = False,
        persistent_workers: bool | None = None,
    ) -> None:
        self.dataset, self.batch_sampler = dataset, batch_sampler
        self.num_workers, self.pin_memory = num_workers, pin_memory
        self.persistent_workers = num_workers > 0 if persistent_workers is None else bool(persistent_workers and num_workers > 0)
        self._loader: DataLoader | None = None
        self._yielded = 0
        self._exhausted = False

    def __len__(self) -> int:
        return len(self.batch_sampler)

    @property
    def sampler(self) -> ClipBatchSampler:
        """Where Lightning looks for `set_epoch` at the start of every epoch."""
        return self.batch_sampler

    def __iter__(self) -> Iterator[Any]:
        sampler = self.batch_sampler
        self._yielded, self._exhausted = sampler.skip, False
        if self._loader is None or not self.persistent_workers:
            preload = getattr(self.dataset, "preload", None)
            if self.num_workers > 0 and preload is not None:
                preload()
            self._loader = DataLoader(
                self.dataset,
                batch_sampler=_Pass(sampler),
                num_workers=self.num_workers,
                pin_memory=self.pin_memory,
                collate_fn=collate,
                persistent_workers=self.persistent_workers,
            )
        return self._count(iter(self._loader))

    def _count(self, iterator: Iterator[Any]) -> Iterator[Any]:
        for batch in iterator:
            self._yielded += 1
            yield batch
        self._exhausted = True

    def state_dict(self) -> dict[str, int]:
        consumed = self._yielded if self._exhausted else max(0, self._yielded - self.LOOP_PREFETCH)
        return {"epoch": self.batch_sampler.epoch, "consumed": consumed}

    def load_state_dict(self, state: dict[str, int]) -> None:
        epoch, consumed = int(state["epoch"]), int(state["consumed"])
        if consumed >= len(self):  # the checkpoint closed its epoch: start the next one
            epoch, consumed = epoch + 1, 0
        self.batch_sampler.set_epoch(epoch)
        self.batch_sampler.skip = consumed


class _Pass:
    """The sampler's batches for one pass, with the epoch and skip fixed when the pass starts (at each `iter`,
    so that one persistent `DataLoader` serves every epoch)."""

    def __init__(self, sampler: ClipBatchSampler) -> None:
        self.sampler = sampler
        self.batches: list[list[ClipRequest]] | None = None

    def __len__(self) -> int:
        return len(self.batches) if self.batches is not None else len(self.sampler) - self.sampler.skip

    def __iter__(self) -> Iterator[list[ClipRequest]]:
        self.batches = list(iter(self.sampler))
        return iter(self.batches)


def collate(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack tensors of the samples of a batch; keep other fields as lists."""
    batch: dict[str, Any] = {}
    for key in samples[0]:
        values = [s[key] for s in samples]
        batch[key] = torch.stack(values) if isinstance(values[0], torch.Tensor) else values
    return batch
