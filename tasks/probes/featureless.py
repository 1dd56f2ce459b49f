"""Featureless references for the probes: what the tables' numbers would be without any features.

A probe's score means something only above what the labels' layout alone gives. The VOS probe has two
references, computed from the same training and test masks as the probes and scored with the same J / F:

- **position prior** (the probe's counterpart): each class's frequency at every position of a
  `grid × grid` map of normalised frame coordinates, from the training masks; a test pixel takes the class
  with the highest frequency *relative to that class's overall rate* — the decision of a classifier
  trained on class-balanced samples, as the probe is (`linear_probe.sample_pixels`) — or, with
  `balanced=False`, the highest frequency itself (as the probe after `--prior-correction`). The same map
  for every frame of every test sequence.
- **first mask copied** (label propagation's counterpart): every frame takes the given first mask.

On DAVIS objects sit near the centre, so the position prior is not a weak baseline: a probe below it has
learned nothing from the features that the position did not already give.

The depth probe's reference is **position mean** (`PositionMean`): the mean log-depth at every position of
the same grid over the training maps' valid pixels, exponentiated — what a regression from position alone
gives.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

GRID = 32
FEATURELESS = "featureless"  # the name of the reference row in the probes' tables


def _to_grid(maps: Tensor, grid: int) -> Tensor:
    """`(N, C, H, W)` → `(C, grid, grid)`: area-resized to the grid, summed over the N maps (float64)."""
    return F.interpolate(maps.double(), size=(grid, grid), mode="area").sum(0)


class PositionPrior:
    """Per-class frequency maps `(K, grid, grid)` accumulated from `(T, H, W)` label maps of any size.

        prior = PositionPrior(classes=2)
        for labels in training_label_maps:   # (T, H, W) int64
            prior.add(labels)
        prediction = prior.predict((T, H, W))  # (T, H, W) int64, the same map for every frame
    """

    def __init__(self, classes: int, grid: int = GRID) -> None:
        if classes < 2 or grid < 1:
            raise ValueError(f"classes must be ≥ 2 and grid ≥ 1, got {classes} and {grid}")
        self.classes, self.grid = classes, grid
        self.counts = torch.zeros(classes, grid, grid, dtype=torch.float64)
        self.frames = 0

    def add(self, labels: Tensor) -> None:
        """Count `(T, H, W)` int64 class ids (ids ≥ `classes` are ignored), each frame area-resized to the grid."""
        one_hot = torch.stack([labels == k for k in range(self.classes)], dim=1)  # (T, K, H, W)
        self.counts += _to_grid(one_hot, self.grid)
        self.frames += labels.shape[0]

    def predict(self, shape: tuple[int, int, int], balanced: bool = True) -> Tensor:
        """`(T, H, W)` int64 class ids for frames of `shape` (the position map resized bilinearly)."""
        if self.frames == 0:
            raise ValueError("PositionPrior.predict needs at least one add() first")
        frequency = self.counts / self.frames  # (K, grid, grid): P(class k at this position)
        if balanced:
            rate = frequency.mean(dim=(1, 2), keepdim=True).clamp_min(1e-12)  # P(class k) over the frame
            frequency = frequency / rate
        frames, height, width = shape
        score = F.interpolate(frequency[None].float(), size=(height, width), mode="bilinear", align_corners=False)[0]
        return score.argmax(0).expand(frames, height, width).clone()


def copy_first_mask(labels: Tensor) -> Tensor:
    """`(T, H, W)` → `(T, H, W)`: every frame is the given first frame's mask."""
    return labels[:1].expand_as(labels).clone()


class PositionMean:
    """The mean of a per-pixel quantity at each position of a `grid × grid` map, over the pixels where it is
    valid, from `(H, W)` maps of any size.

        mean = PositionMean()
        for log_depth, valid in training_maps:   # (H, W) float, (H, W) bool
            mean.add(log_depth, valid)
        prediction = mean.predict((H, W))         # (H, W) float32
    """

    def __init__(self, grid: int = GRID) -> None:
        if grid < 1:
            raise ValueError(f"grid must be ≥ 1, got {grid}")
        self.grid = grid
        self.weighted = torch.zeros(grid, grid, dtype=torch.float64)  # Σ value × valid fraction
        self.weight = torch.zeros(grid, grid, dtype=torch.float64)  # Σ valid fraction

    def add(self, values: Tensor, valid: Tensor) -> None:
        """Accumulate `values` `(H, W)` where `valid` `(H, W)` bool (values elsewhere are ignored, NaN included)."""
        if values.shape != valid.shape or values.dim() != 2:
            raise ValueError(f"values and valid must be the same (H, W), got {tuple(values.shape)} and {tuple(valid.shape)}")
        kept = torch.where(valid, values.double(), 0.0)
        self.weighted += _to_grid(kept[None, None], self.grid)[0]
        self.weight += _to_grid(valid[None, None], self.grid)[0]

    def predict(self, shape: tuple[int, int]) -> Tensor:
        """`(H, W)` float32: the position means resized bilinearly (a cell no valid pixel reached: the overall mean)."""
        total = float(self.weight.sum())
        if total == 0:
            raise ValueError("PositionMean.predict needs at least one valid pixel added first")
        overall = float(self.weighted.sum()) / total
        mean = torch.where(self.weight > 0, self.weighted / self.weight.clamp_min(1e-300), overall)
        return F.interpolate(mean[None, None].float(), size=tuple(shape), mode="bilinear", align_corners=False)[0, 0]
