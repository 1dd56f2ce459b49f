"""Scene events: changes of a clip where frame t's own content is the truth (DESIGN.md §5.5).

The other half of the lesson of `degrade.py`: here the altered frames are the scene, so their targets are the
backbone's features of the altered frames themselves, and leaning on the neighbours would be wrong. Without
them, a network trained on degradations alone learns "lean on the neighbours whenever frame t differs", and a
fade or a cut looks like a degradation.

- "fade": frames × α (α in [0.03, 0.6], towards black);
- "exposure": frames × g, clipped (g in [1.3, 2.0] or [0.5, 0.77]);
- "cut": frames 0 … c − 1 come from another clip (a hard cut to another shot before frame c);
- "flat": a rectangle of one random colour from frame t to the end of the clip (a region flat for real, e.g.
  a wall that comes into view), or the whole frame when the rectangle is drawn full-size.

A fade or an exposure change hits frame t alone or frames t … T − 1 (half and half). Every event says which
frames it altered (their crop loss counts once more, as the degraded frame's does) and which pairs of
consecutive frames no longer show the same content (the temporal loss leaves them out; a cut's pair is the
shot test's negative example).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

EVENTS = ("fade", "exposure", "cut", "flat")


@dataclass(frozen=True)
class SceneEvent:
    """One drawn event for a batch of clips (the same kind and strength for the batch).

    Attributes:
        kind: one of `EVENTS`; start: `(B,)` its first frame t per clip (for a cut: the first frame of the new
            shot); through: it lasts to the end of the clip (else frame t alone; cuts and flat regions always
            last); gain: the factor of a fade or an exposure change; box, colour: the flat rectangle.
    """

    kind: str
    start: Tensor
    through: bool = False
    gain: float = 1.0
    box: tuple[int, int, int, int] = (0, 0, 0, 0)
    colour: tuple[float, float, float] = (0.5, 0.5, 0.5)

    def altered(self, frames: int) -> Tensor:
        """`(B, T)` bool: the frames whose content the event changed (for a cut, the first of the new shot)."""
        index = torch.arange(frames)[None, :]
        start = self.start[:, None]
        if self.kind == "cut" or not self.through and self.kind != "flat":
            return index == start
        return index >= start

    def broken_pairs(self, frames: int) -> Tensor:
        """`(B, T − 1)` bool: pairs (j, j + 1) whose content differs because of the event."""
        altered = self.altered(frames)
        if self.kind == "cut":
            return altered[:, 1:]  # the pair (c − 1, c)
        return altered[:, 1:] ^ altered[:, :-1]  # where the event begins (and ends, for frame t alone)

    def apply(self, clips: Tensor, other: Tensor | None = None) -> Tensor:
        """The clips `(B, T, 3, H, W)` with the event (a new tensor); `other` `(B, T, 3, H, W)`: the other shot of a
        cut."""
        out = clips.clone()
        b, t = clips.shape[:2]
        altered = self.altered(t)
        if self.kind == "cut":
            if other is None:
                raise ValueError("a cut needs the other shot's frames (other)")
            before = torch.arange(t)[None, :] < self.start[:, None]  # (B, T)
            out[before] = other[before].to(out)
            return out
        if self.kind in ("fade", "exposure"):
            out[altered] = (out[altered] * self.gain).clamp(0.0, 1.0)
            return out
        top, bottom, left, right = self.box
        region = out[..., top:bottom, left:right]  # (B, T, 3, h', w') view
        colour = torch.tensor(self.colour, dtype=out.dtype).view(3, 1, 1)
        for i in range(b):
            region[i, altered[i]] = colour
        return out


def draw_event(
    generator: torch.Generator, clips: int, frames: int, size: tuple[int, int], *, kinds: tuple[str, ...] = EVENTS
) -> SceneEvent:
    """A random event for `clips` clips of `frames` frames of `size` (H, W)."""
    unknown = [k for k in kinds if k not in EVENTS]
    if not kinds or unknown:
        raise ValueError(f"kinds must be a non-empty subset of {EVENTS}, got {list(kinds)}")

    def uniform(low: float, high: float) -> float:
        return low + (high - low) * float(torch.rand((), generator=generator))

    kind = kinds[int(torch.randint(0, len(kinds), (), generator=generator))]
    low = 1 if kind == "cut" else 0  # a cut needs a frame of the other shot before it
    start = torch.randint(low, frames, (clips,), generator=generator)
    through = bool(torch.rand((), generator=generator) < 0.5)
    if kind == "fade":
        gain = uniform(0.03, 0.6)
    elif kind == "exposure":
        gain = uniform(1.3, 2.0) if torch.rand((), generator=generator) < 0.5 else uniform(0.5, 0.77)
    else:
        gain = 1.0
    h, w = size
    full = bool(torch.rand((), generator=generator) < 0.25)
    bh, bw = (h, w) if full else (max(1, int(uniform(0.3, 0.7) * h)), max(1, int(uniform(0.3, 0.7) * w)))
    top = int(torch.randint(0, h - bh + 1, (), generator=generator))
    left = int(torch.randint(0, w - bw + 1, (), generator=generator))
    colour = tuple(float(v) for v in torch.rand(3, generator=generator))
    return SceneEvent(kind, start, through, gain, (top, top + bh, left, left + bw), colour)
