"""The BasicAVSR LightningDataModule: training patches and evaluation clips from folders and videos."""

from __future__ import annotations

from typing import Sequence

import lightning as L
import torch
from torch.utils.data import DataLoader

from videoanyup.tasks.avsr.datasets import EvalClips, TrainPatches
from videoanyup.tasks.avsr.degradation import parse_scale
from videoanyup.tasks.avsr.sampling import ClipBatchSampler, ResumableLoader, collate
from videoanyup.tasks.avsr.sources import find_clips


class AVSRDataModule(L.LightningDataModule):
    """REDS-style training with the recipe of DESIGN.md §4.7, validation with the papers' protocol.

    Args:
        train_sources: frame folders, video files, or folders of either (REDS `train_sharp`).
        val_sources: the same for validation (None: no validation).
        num_frames: T, frames per training clip (15 in the recipe).
        lr_patch: side of the LR training patch (80).
        gt_patch: side of the supervised HR sub-crop (80).
        scale_range: `(min, max)` of the independently drawn scales a and b.
        antialias: antialiased bicubic degradation instead of torch's plain bicubic.
        batch_size: clips per process and step.
        samples_per_epoch: training samples per epoch over all processes (None: one per clip).
        reverse: probability of temporal reversal.
        flip: probability of each of the horizontal and vertical flips.
        seed: seed of the data plan (clip order, crops, scales, augmentation).
        num_workers: data loading processes per training process.
        val_scales: evaluation scales, e.g. `["2", "4", "2.5x3.5"]`.
        val_frames: frames per validation clip (None: all).
        val_crop: centre crop `(H, W)` of validation frames (None: whole frames).
    """

    def __init__(
        self,
        train_sources: Sequence[str],
        val_sources: Sequence[str] | None = None,
        *,
        num_frames: int = 15,
        lr_patch: int = 80,
        gt_patch: int = 80,
        scale_range: tuple[float, float] = (1.0, 4.0),
        antialias: bool = False,
        batch_size: int = 8,
        samples_per_epoch: int | None = None,
        reverse: float = 0.5,
        flip: float = 0.5,
        seed: int = 0,
        num_workers: int = 4,
        val_scales: Sequence[str] = ("2", "3", "4"),
        val_frames: int | None = None,
        val_crop: tuple[int, int] | None = None,
    ) -> None:
        super().__init__()
        if num_frames < 1:
            raise ValueError(f"num_frames={num_frames} must be >= 1")
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size} must be >= 1")
        self.train_sources, self.val_sources = list(train_sources), list(val_sources or [])
        self.num_frames, self.lr_patch, self.gt_patch = num_frames, lr_patch, gt_patch
        self.scale_range, self.antialias = tuple(scale_range), antialias
        self.batch_size, self.samples_per_epoch = batch_size, samples_per_epoch
        self.reverse, self.flip, self.seed, self.num_workers = reverse, flip, seed, num_workers
        self.val_scales = [parse_scale(s) for s in val_scales]
        self.val_frames, self.val_crop = val_frames, None if val_crop is None else tuple(val_crop)
        self.train_clips: list = []
        self.val_clips: list = []
        self._train_loader: ResumableLoader | None = None

    def _rank(self) -> tuple[int, int]:
        trainer = self.trainer
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    def setup(self, stage: str | None = None) -> None:
        if stage in (None, "fit") and not self.train_clips:
            self.train_clips = find_clips(self.train_sources)
        if stage in (None, "fit", "validate") and self.val_sources and not self.val_clips:
            self.val_clips = find_clips(self.val_sources)

    def train_dataloader(self) -> ResumableLoader:
        rank, world_size = self._rank()
        sampler = ClipBatchSampler(
            self.train_clips,
            num_frames=self.num_frames,
            lr_patch=self.lr_patch,
            gt_patch=self.gt_patch,
            scale_range=self.scale_range,
            batch_size=self.batch_size,
            seed=self.seed,
            samples_per_epoch=self.samples_per_epoch,
            reverse=self.reverse,
            flip=self.flip,
            rank=rank,
            world_size=world_size,
        )
        dataset = TrainPatches(self.train_clips, num_frames=self.num_frames, antialias=self.antialias)
        self._train_loader = ResumableLoader(dataset, sampler, num_workers=self.num_workers, pin_memory=torch.cuda.is_available())
        return self._train_loader

    def val_dataloader(self) -> DataLoader | list:
        if not self.val_clips:
            return []
        rank, world_size = self._rank()
        dataset = EvalClips(
            self.val_clips,
            self.val_scales,
            num_frames=self.val_frames,
            crop=self.val_crop,
            antialias=self.antialias,
            rank=rank,
            world_size=world_size,
        )
        return DataLoader(dataset, batch_size=1, num_workers=min(self.num_workers, 2), collate_fn=collate)
