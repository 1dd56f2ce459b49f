"""Second-order motion compensation (DESIGN.md §4.4): align the states of t−1 and t−2 to frame t.

1. coarse: the flows t→t−1 and t→t−2 (the caller composes the second with `compose_flows`);
2. fine: attention over the integer neighbours of each flow target (`FlowGuidedWindowAttention`);
3. second-order deformable alignment of `[g_{t−1} ‖ g_{t−2}]`, conditioned on the finely aligned states
   and the current features, plus a zero-initialised 1×1 fusion of the finely aligned states.
"""

from __future__ import annotations

from torch import Tensor, nn

import torch

from videoanyup.layers.deformable_alignment import SecondOrderDeformableAlignment
from videoanyup.layers.local_attention import FlowGuidedWindowAttention


class SecondOrderMotionCompensation(nn.Module):
    """Aligned previous states `(N, C, h, w)`.

    Args:
        channels: C of the propagated state.
        guide_channels: channels of the current frame's features (queries and offset conditioning);
            defaults to C.
        window: fine-attention window, 2 or 3.
        deform_groups, offset_layers: see `SecondOrderDeformableAlignment`.
    """

    def __init__(
        self,
        channels: int,
        *,
        guide_channels: int | None = None,
        window: int = 2,
        deform_groups: int = 16,
        offset_layers: int = 3,
    ) -> None:
        super().__init__()
        guide_channels = channels if guide_channels is None else guide_channels
        self.fine = FlowGuidedWindowAttention(channels, guide_channels, window=window)
        self.deform = SecondOrderDeformableAlignment(
            channels, 2 * channels + guide_channels, deform_groups=deform_groups, offset_layers=offset_layers
        )
        self.fuse = nn.Conv2d(2 * channels, channels, 1)
        nn.init.zeros_(self.fuse.weight)
        nn.init.zeros_(self.fuse.bias)

    def forward(
        self,
        guide: Tensor,
        prev1: Tensor | None,
        prev2: Tensor | None,
        flow1: Tensor | None,
        flow2: Tensor | None,
    ) -> Tensor:
        """Args:
            guide: `(N, Cg, h, w)` features of the current frame t.
            prev1, prev2: `(N, C, h, w)` states of t−1 and t−2, or None before the clip has them.
            flow1: `(N, 2, h, w)` flow t→t−1; flow2: flow t→t−2 (composed). None with their state.
        Returns:
            `(N, C, h, w)`; zeros when there is no previous state.
        """
        if prev1 is None:
            c = self.fuse.out_channels
            return guide.new_zeros(guide.shape[0], c, *guide.shape[-2:])
        if prev2 is None:
            prev2, flow2 = torch.zeros_like(prev1), torch.zeros_like(flow1)
        fine1 = self.fine(guide, prev1, flow1)
        fine2 = self.fine(guide, prev2, flow2)
        aligned = self.deform(prev1, prev2, torch.cat([fine1, guide, fine2], dim=1), flow1, flow2)
        return aligned + self.fuse(torch.cat([fine1, fine2], dim=1))
