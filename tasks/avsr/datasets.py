"""Map-style datasets of training patches and evaluation clips for BasicAVSR (DESIGN.md §4.7).

`TrainPatches` turns a `ClipRequest` into one sample: T frames, temporal reversal and flips, an HR crop
downsampled to the LR patch, and the supervised HR sub-crop. `EvalClips` yields whole (optionally centre
cropped) clips at each evaluation scale with the protocol's LR, split over processes.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor
from torch.utils.data import Dataset

from videoanyup.tasks.avsr.degradation import degrade, eval_lr_size, scale_label
from videoanyup.tasks.avsr.sampling import ClipRequest
from videoanyup.tasks.avsr.sources import Clip


class TrainPatches(Dataset):
    """Training samples; the request decides everything, so any worker builds the same sample.

    Returns a dict with
        lr: `(T, 3, p, p)` LR patch, float in [0, 1];
        hr: `(T, 3, g, g)` the supervised HR sub-crop `request.region` of the `(Hc, Wc)` HR crop;
        hr_size: `(2,)` = `(Hc, Wc)`, the output size to ask the network for;
        region: `(4,)` = `(top, bottom, left, right)` of the supervised part.
    """

    def __init__(self, clips: Sequence[Clip], *, num_frames: int, antialias: bool = False) -> None:
        self.clips, self.num_frames, self.antialias = list(clips), num_frames, antialias

    def __len__(self) -> int:  # requests come from the batch sampler; this is only informative
        return len(self.clips)

    def preload(self) -> None:
        """Decode the video files `Clip.read` keeps decoded, in this process (`ResumableLoader`)."""
        for clip in self.clips:
            clip.preload()

    def __getitem__(self, request: ClipRequest) -> dict[str, Tensor]:
        clip = self.clips[request.clip]
        frames = clip.read(request.start, self.num_frames)  # (T, 3, H, W)
        ch, cw = request.hr_crop
        hr = frames[..., request.top : request.top + ch, request.left : request.left + cw]  # (T, 3, Hc, Wc)
        if request.reverse:
            hr = hr.flip(0)
        if request.hflip:
            hr = hr.flip(-1)
        if request.vflip:
            hr = hr.flip(-2)
        lr = degrade(hr, request.lr_patch, antialias=self.antialias)  # (T, 3, p, p)
        top, bottom, left, right = request.region
        return {
            "lr": lr.contiguous(),
            "hr": hr[..., top:bottom, left:right].contiguous(),  # (T, 3, g, g)
            "hr_size": torch.tensor(request.hr_crop),
            "region": torch.tensor(request.region),
        }


class EvalClips(Dataset):
    """Evaluation clips × scales, this process's share, padded to the same length on every process.

    Each item is one clip at one scale: HR = the first `num_frames` frames (all if None), centre-cropped
    to `crop` if given; LR = bicubic to `(floor(H/a), floor(W/b))`, rounded to 8 bits like stored LR
    frames. Items past this process's share are padding (`valid` False) so that every process runs the
    same number of steps; they must not be counted.

    Returns a dict with `lr (T, 3, h, w)`, `hr (T, 3, H, W)`, `label` (e.g. "x2.5x3.5"), `clip` (name),
    `valid` (bool).
    """

    def __init__(
        self,
        clips: Sequence[Clip],
        scales: Sequence[tuple[float, float]],
        *,
        num_frames: int | None = None,
        crop: tuple[int, int] | None = None,
        antialias: bool = False,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.clips, self.scales = list(clips), list(scales)
        self.num_frames, self.crop, self.antialias = num_frames, crop, antialias
        items = [(c, s) for c in range(len(self.clips)) for s in range(len(self.scales))]
        per_rank = math.ceil(len(items) / world_size)
        self.items = items[rank::world_size]
        self.padding = per_rank - len(self.items)

    def __len__(self) -> int:
        return len(self.items) + self.padding

    def __getitem__(self, index: int) -> dict:
        valid = index < len(self.items)
        clip_index, scale_index = self.items[index] if valid else self.items[0] if self.items else (0, 0)
        clip, scale = self.clips[clip_index], self.scales[scale_index]
        hr = clip.read(0, min(self.num_frames or clip.num_frames, clip.num_frames))  # (T, 3, H, W)
        if self.crop is not None:
            ch, cw = min(self.crop[0], hr.shape[-2]), min(self.crop[1], hr.shape[-1])
            top, left = (hr.shape[-2] - ch) // 2, (hr.shape[-1] - cw) // 2
            hr = hr[..., top : top + ch, left : left + cw]
        lr = degrade(hr, eval_lr_size(*hr.shape[-2:], scale), antialias=self.antialias, quantize_8bit=True)
        return {"lr": lr, "hr": hr, "label": scale_label(scale), "clip": clip.name, "valid": valid}
