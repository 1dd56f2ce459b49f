"""One alteration per clip step: a degradation (the clean frame is the target) or a scene event (the altered
frame is the target), and what the losses need to know about it (DESIGN.md §5.5, "One behaviour, learned").

`draw_alteration` decides from the step's generator: nothing, a degradation (`degrade.py`) or a scene event
(`events.py`), with the probabilities of the recipe. `Alteration.apply` returns the clip the network and the
backbone see, the clip whose features are the targets, and the masks of the losses:
- `altered` `(B, T)`: frames whose crop loss counts once more (`altered_weight`): the degraded frame, the
  frames an event changed, the first frame after a cut;
- `broken` `(B, T − 1)`: pairs the temporal loss leaves out (an event began or ended there, or a cut);
- `same_shot` `(B, T − 1)` float labels of the shot test and `labelled` `(B, T − 1)` bool: which pairs are
  supervised (every pair, except those an event other than a cut broke: whether a fade is "the same shot" is
  left to the task loss).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from videoanyup.tasks.upsampler.degrade import Degradation, degrade_clips, draw_degradation
from videoanyup.tasks.upsampler.events import SceneEvent, draw_event


@dataclass(frozen=True)
class AlteredClip:
    """The clips of a step after an alteration (see the module docstring)."""

    inputs: Tensor  # (B, T, 3, H, W) what the backbone and the guidance see
    scene: Tensor  # (B, T, 3, H, W) what the targets are made of
    altered: Tensor  # (B, T) bool
    broken: Tensor  # (B, T − 1) bool
    same_shot: Tensor  # (B, T − 1) float
    labelled: Tensor  # (B, T − 1) bool


@dataclass(frozen=True)
class Alteration:
    """A drawn degradation or scene event (exactly one of them)."""

    degradation: Degradation | None = None
    event: SceneEvent | None = None

    def apply(self, clips: Tensor, other: Tensor | None = None, generator: torch.Generator | None = None) -> AlteredClip:
        """Alter `(B, T, 3, H, W)` clips; `other`: another clip per clip, the other shot of a cut."""
        b, t = clips.shape[:2]
        pairs = (b, max(t - 1, 0))
        same_shot = torch.ones(pairs)
        labelled = torch.ones(pairs, dtype=torch.bool)
        if self.degradation is not None:
            altered = torch.arange(t)[None, :] == self.degradation.frames[:, None]
            inputs = degrade_clips(clips, self.degradation, generator)
            return AlteredClip(inputs, clips, altered, torch.zeros(pairs, dtype=torch.bool), same_shot, labelled)
        event = self.event
        scene = event.apply(clips, other)
        broken = event.broken_pairs(t)
        if event.kind == "cut":
            same_shot = (~broken).float()
        else:
            labelled = ~broken
        return AlteredClip(scene, scene, event.altered(t), broken, same_shot, labelled)


def unaltered(clips: Tensor) -> AlteredClip:
    """The masks of a clip step without an alteration."""
    b, t = clips.shape[:2]
    pairs = (b, max(t - 1, 0))
    return AlteredClip(
        clips, clips, torch.zeros(b, t, dtype=torch.bool), torch.zeros(pairs, dtype=torch.bool), torch.ones(pairs),
        torch.ones(pairs, dtype=torch.bool),
    )


def draw_alteration(
    generator: torch.Generator,
    clips: int,
    frames: int,
    size: tuple[int, int],
    *,
    degrade_probability: float,
    event_probability: float,
    degradations: tuple[str, ...],
    events: tuple[str, ...],
    blur_sigma: tuple[float, float],
) -> Alteration | None:
    """None, a degradation (with `degrade_probability`) or a scene event (with `event_probability`)."""
    draw = float(torch.rand((), generator=generator))
    if draw < degrade_probability:
        return Alteration(degradation=draw_degradation(generator, clips, frames, size, kinds=degradations, sigma=blur_sigma))
    if draw < degrade_probability + event_probability:
        return Alteration(event=draw_event(generator, clips, frames, size, kinds=events))
    return None
