"""Contrast-normalised cues of how frame t differs from a neighbour (DESIGN.md §5.5, "One behaviour, learned").

Whether frame t should lean on a neighbour depends on *why* the two differ. A degraded frame (blur, defocus,
noise, an occluder, a dropped frame) has lost what its neighbours still show; a scene event (a fade, an
exposure change, a cut, a region that is flat for real) changed the content, and frame t's own features are
the truth. Raw intensities mix the two: a dimmer frame has less edge energy, like a blurred one. These cues
are computed on each frame **normalised by its own global contrast** (per channel, `(x − mean) / std`), so a
global change of brightness or contrast leaves them unchanged, and report that change apart:

per frame (`FrameStructure`, once per frame, on the flow grid then pooled to the LR grid):
- `energy`: log of the mean gradient magnitude of the normalised frame in each LR cell (how sharp it is);
- `low`: the normalised frame's mean in each LR cell (its low band: what the content is, blur keeps it);
- `photometry`: the frame's log contrast and mean brightness (what a fade or an exposure change moves);
- `thumbnail`: the normalised frame averaged over a 3 × 3 grid (its layout: a pan moves it a little, a cut
  replaces it; needs no flow, so it holds where the flow fails, as across a cut or a fade).

per pair t, s (`pair_cues`, s warped to t by the LR flow t → s), `PAIR_CUES` maps `(N, 8, h, w)`:
  [energy_s − energy_t, |low_t − low_s|, energy_t, and broadcast over the frame: the means of the first two,
  the change of log contrast and of brightness, and the mean |thumbnail_t − thumbnail_s|].
A blur or an occluder raises the first (the neighbour is sharper here) while the low band mostly agrees or
disagrees only locally; a cut makes the low band disagree everywhere; a fade or exposure change leaves the
maps alone and moves the photometric pair. The networks that use them (`AgreementBias`, `GuidanceFusion`,
`ShotTest`) learn what to do with each case from training on both kinds (see `tasks/upsampler/alterations.py`).
No cue has parameters, and every one runs the same in training and inference.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from videoanyup.functional.warp import flow_warp

PAIR_CUES = 8
CONTRAST_FLOOR = 1e-3  # the least std a frame is divided by: a flat frame stays finite, a fade stays exact
ENERGY_FLOOR = 1e-2  # added to the mean gradient before the log (normalised units)


@dataclass
class FrameStructure:
    """What the cues read of one frame, on the LR grid.

    Attributes:
        energy: `(N, 1, h, w)` log mean gradient magnitude of the contrast-normalised frame per LR cell.
        low: `(N, 3, h, w)` the contrast-normalised frame averaged over each LR cell.
        photometry: `(N, 2)` the frame's log contrast and mean brightness (averaged over channels).
        thumbnail: `(N, 3, 3, 3)` the contrast-normalised frame averaged over a 3 × 3 grid.
    """

    energy: Tensor
    low: Tensor
    photometry: Tensor
    thumbnail: Tensor

    def tensors(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        return self.energy, self.low, self.photometry, self.thumbnail


def frame_structure(frames: Tensor, lr_size: tuple[int, int]) -> FrameStructure:
    """The structure of frames `(N, 3, fh, fw)` in [0, 1] (the flow grid, ≥ the LR grid) on the LR grid `(h, w)`."""
    frames = frames.float()
    mean = frames.mean(dim=(-2, -1), keepdim=True)  # (N, 3, 1, 1)
    std = frames.std(dim=(-2, -1), keepdim=True, unbiased=False) if frames.shape[-1] * frames.shape[-2] > 1 else torch.zeros_like(mean)
    std = std.clamp_min(CONTRAST_FLOOR)
    normalised = (frames - mean) / std  # (N, 3, fh, fw): the same for x and a·x + b (a > 0)
    grey = normalised.mean(dim=1, keepdim=True)  # (N, 1, fh, fw)
    dx = F.pad((grey[..., :, 1:] - grey[..., :, :-1]).abs(), (0, 1, 0, 0))
    dy = F.pad((grey[..., 1:, :] - grey[..., :-1, :]).abs(), (0, 0, 0, 1))
    energy = F.adaptive_avg_pool2d(dx + dy, lr_size)  # (N, 1, h, w)
    low = F.adaptive_avg_pool2d(normalised, lr_size)  # (N, 3, h, w)
    photometry = torch.stack([torch.log(std).mean(dim=(1, 2, 3)), mean.mean(dim=(1, 2, 3))], dim=1)
    thumbnail = F.adaptive_avg_pool2d(normalised, (3, 3))  # (N, 3, 3, 3)
    return FrameStructure(torch.log(energy + ENERGY_FLOOR), low, photometry, thumbnail)


def pair_cues(own: FrameStructure, other: FrameStructure, flow: Tensor) -> Tensor:
    """`(N, PAIR_CUES, h, w)`: how frame t (`own`) differs from a neighbour s (`other`) warped to it.

    Args:
        own, other: `FrameStructure`s of frames t and s (N frames each).
        flow: `(N, 2, h, w)` LR flow t → s.
    """
    warped_energy = flow_warp(other.energy, flow.to(other.energy.dtype), padding_mode="border")
    warped_low = flow_warp(other.low, flow.to(other.low.dtype), padding_mode="border")
    sharper = warped_energy - own.energy  # (N, 1, h, w), > 0: the neighbour shows more edges here
    gap = (own.low - warped_low).abs().mean(dim=1, keepdim=True)  # (N, 1, h, w), large: other content
    change = own.photometry - other.photometry  # (N, 2): log contrast and brightness of t minus s's
    layout = (own.thumbnail - other.thumbnail).abs().mean(dim=(1, 2, 3))[:, None]  # (N, 1), no flow needed
    frame_level = torch.cat([sharper.mean(dim=(-2, -1)), gap.mean(dim=(-2, -1)), change, layout], dim=1)  # (N, 5)
    h, w = own.energy.shape[-2:]
    return torch.cat([sharper, gap, own.energy, frame_level[:, :, None, None].expand(-1, -1, h, w)], dim=1)


def absent_cues(own: FrameStructure) -> Tensor:
    """`(N, PAIR_CUES, h, w)` cues of a neighbour that is not there: no difference (the caller masks it)."""
    zeros = torch.zeros_like(own.energy)
    h, w = own.energy.shape[-2:]
    return torch.cat([zeros, zeros, own.energy, zeros.new_zeros(zeros.shape[0], PAIR_CUES - 3, h, w)], dim=1)
