"""Frame t's HR guidance completed from its neighbours' (DESIGN.md §5.5, "Queries across frames").

The queries of the window attention come from frame t's HR guidance. When frame t is blurred, its guidance has
no edges, every query looks like its neighbours, and the weights — over frame t's window and the neighbour
windows alike — spread out: the output falls towards bilinear however well the neighbour values are aligned.
Frames t−1 and t+1 saw the same scene sharp. Their guidance features, backward-warped to t with the flows
t→t±1 (border padding), are fused into frame t's by a per-pixel network:

    ĝ± = g_t + p± · (warp(g_{t±1}, f_{t→t±1}) − g_t),
    (a₋, a₊, b) = s · MLP([g_t, ĝ₋, |ĝ₋ − g_t|, ĝ₊, |ĝ₊ − g_t|, p₋ · cues₋, p₊ · cues₊]),
    g'_t = g_t + a₋ ⊙ (ĝ₋ − g_t) + a₊ ⊙ (ĝ₊ − g_t) + max(p₋, p₊) · b,

where p± is the same-shot probability of the pair (`ShotTest`: 0 behind a cut) and cues± the contrast-normalised
pair cues (`frame_cues.pair_cues`, LR maps resized to the output grid), which tell the network whether frame t
lost edges that the neighbour has (blur, an occluder: take the neighbour's) or whether the scene changed (a fade,
an exposure change: keep frame t's). A neighbour that is absent (the clip's ends; t+1 in unidirectional mode,
which stays causal) enters with p = 0 and zero cues, so a neighbour behind a cut is exactly an absent one; with
both at p = 0 the guidance is frame t's own, exactly as for a single frame. The last layer starts at zero, so `g'_t = g_t` before training; s =
`OUTPUT_SCALE` lets Adam move the gates as fast as the rest. Only the queries change: the values stay the raw LR
features, and every output vector is still a convex combination of them. The network is 1×1 convolutions (the
guidance encoder and the cues give each pixel its context), so it runs in row bands when no gradient is recorded
and its memory stays that of a band, whatever the output size.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from videoanyup.functional.warp import flow_warp
from videoanyup.layers.frame_cues import PAIR_CUES

BAND_PIXELS = 1 << 16  # pixels per band when no gradient is recorded
OUTPUT_SCALE = 4.0  # the gates' scale (their last layer starts at zero)


@dataclass
class FusionNeighbour:
    """One neighbour (t − 1 or t + 1) of the fusion.

    Attributes:
        guidance: `(N, Cg, H, W)` its raw HR guidance.
        flow: `(N, 2, H, W)` the flow t → that frame, in HR pixels.
        cues: `(N, PAIR_CUES, h, w)` the pair cues of frame t against it (LR grid).
        gate: `(N,)` its same-shot probability p.
    """

    guidance: Tensor
    flow: Tensor
    cues: Tensor
    gate: Tensor


class GuidanceFusion(nn.Module):
    """Per-pixel fusion of the warped guidance of frames t−1 and t+1 into frame t's.

    Args:
        channels: Cg of the guidance features.
        hidden: width of the fusion network.
    """

    def __init__(self, channels: int, *, hidden: int = 32) -> None:
        super().__init__()
        self.channels = channels
        self.net = nn.Sequential(
            nn.Conv2d(5 * channels + 2 * PAIR_CUES, hidden, 1),
            nn.LeakyReLU(0.1),
            nn.Conv2d(hidden, hidden, 1),
            nn.LeakyReLU(0.1),
            nn.Conv2d(hidden, 3 * channels, 1),  # (a₋, a₊, b), zero at the start
        )
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def fuse(self, guidance: Tensor, before: Tensor, after: Tensor, cues: Tensor, reach: Tensor) -> Tensor:
        """One band: `(N, Cg, h', w')` guidance of t, gated warped guidance of t∓1 (`ĝ±`), cues `(N, 2·PAIR_CUES,
        h', w')` and `reach` `(N, 1, 1, 1)` = max(p₋, p₊) → `(N, Cg, h', w')` fused guidance."""
        to_before, to_after = before - guidance, after - guidance
        inputs = torch.cat([guidance, before, to_before.abs(), after, to_after.abs(), cues.to(guidance.dtype)], dim=1)
        a_before, a_after, b = (OUTPUT_SCALE * self.net(inputs)).chunk(3, dim=1)
        return guidance + a_before * to_before + a_after * to_after + reach.to(b.dtype) * b

    def forward(self, guidance: Tensor, previous: FusionNeighbour | None, following: FusionNeighbour | None) -> Tensor:
        """Fuse.

        Args:
            guidance: `(N, Cg, H, W)` HR guidance of frames t.
            previous, following: frames t − 1 and t + 1 (`FusionNeighbour`), or None where that neighbour is not
                read (outside the clip, or not in this mode).
        Returns:
            `(N, Cg, H, W)`; a new tensor (the inputs are not changed). Frame t's own guidance when both are None.
        """
        if previous is None and following is None:
            return guidance.clone()
        n = guidance.shape[0]
        hr_size = tuple(guidance.shape[-2:])
        warped, cues, gates = [], [], []
        for name, side in (("previous", previous), ("following", following)):
            if side is None:
                warped.append(guidance)
                cues.append(None)
                gates.append(guidance.new_zeros(n))
                continue
            if side.guidance.shape != guidance.shape or side.flow.shape[-3] != 2 or side.flow.shape[-2:] != guidance.shape[-2:]:
                raise ValueError(
                    f"guidance {tuple(guidance.shape)}, {name}.guidance {tuple(side.guidance.shape)} and its flow "
                    f"{tuple(side.flow.shape)} must be (N, Cg, H, W), (N, Cg, H, W) and (N, 2, H, W)"
                )
            gate = side.gate.to(guidance.dtype)
            moved = flow_warp(side.guidance, side.flow.to(side.guidance.dtype), padding_mode="border")  # (N, Cg, H, W)
            warped.append(guidance + gate[:, None, None, None] * (moved - guidance))
            cues.append(side.cues * gate.to(side.cues.dtype)[:, None, None, None])  # behind a cut: as if absent
            gates.append(gate)
        lr_cues = [c for c in cues if c is not None][0]
        lr_cues = torch.cat([c if c is not None else torch.zeros_like(lr_cues) for c in cues], dim=1)  # (N, 2·PAIR_CUES, h, w)
        cue_maps = F.interpolate(lr_cues.to(guidance.dtype), size=hr_size, mode="bilinear", align_corners=False)
        reach = torch.maximum(gates[0], gates[1])[:, None, None, None]  # (N, 1, 1, 1)
        before, after = warped
        if torch.is_grad_enabled():
            return self.fuse(guidance, before, after, cue_maps, reach)
        out = torch.empty_like(guidance)
        rows = max(1, BAND_PIXELS // guidance.shape[-1])
        for r0 in range(0, guidance.shape[-2], rows):  # every pixel alone: the bands equal the whole
            band = slice(r0, r0 + rows)
            out[..., band, :] = self.fuse(
                guidance[..., band, :], before[..., band, :], after[..., band, :], cue_maps[..., band, :], reach
            )
        return out
