"""Second-order flow-guided deformable alignment (BasicVSR++, Chan et al. 2022).

A modulated deformable convolution reads the two previous states `[g_{t-1} ‖ g_{t-2}]`; its sampling
offsets are the optical flows plus a bounded learned residual, `flow + 10·tanh(Δ)`, and its masks are
`sigmoid(m)`. The residuals and masks come from a small conv net on the conditioning features; its last
layer starts at zero so the module starts as pure flow-guided sampling. Implemented with
`torchvision.ops.deform_conv2d` (CPU and CUDA, no extension of our own).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torchvision.ops import deform_conv2d

KERNEL_TAPS = 9  # 3×3


class SecondOrderDeformableAlignment(nn.Module):
    """`(prev1, prev2)` each `(N, C, h, w)` → aligned `(N, C, h, w)`.

    Args:
        channels: C.
        condition_channels: channels of the conditioning map that predicts offsets and masks.
        deform_groups: offset groups over the 2C input channels (half per source; must be even and
            divide 2C). BasicVSR++ uses 16.
        offset_layers: conv layers (3×3, LeakyReLU) before the final offset conv. BasicVSR++ uses 3.
        max_residue: bound of the learned offset residual, in pixels (10 in BasicVSR++).
    """

    def __init__(
        self,
        channels: int,
        condition_channels: int,
        *,
        deform_groups: int = 16,
        offset_layers: int = 3,
        max_residue: float = 10.0,
    ) -> None:
        super().__init__()
        if deform_groups % 2 or (2 * channels) % deform_groups:
            raise ValueError(f"deform_groups must be even and divide 2*channels={2 * channels}, got {deform_groups}")
        self.deform_groups = deform_groups
        self.max_residue = max_residue
        layers: list[nn.Module] = []
        width = condition_channels
        for _ in range(offset_layers):
            layers += [nn.Conv2d(width, channels, 3, padding=1), nn.LeakyReLU(0.1, inplace=True)]
            width = channels
        self.offset_net = nn.Sequential(*layers)
        self.offset_head = nn.Conv2d(width, 3 * KERNEL_TAPS * deform_groups, 3, padding=1)
        nn.init.zeros_(self.offset_head.weight)
        nn.init.zeros_(self.offset_head.bias)
        self.weight = nn.Parameter(torch.empty(channels, 2 * channels, 3, 3))
        self.bias = nn.Parameter(torch.zeros(channels))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))

    def forward(self, prev1: Tensor, prev2: Tensor, condition: Tensor, flow1: Tensor, flow2: Tensor) -> Tensor:
        """Args:
            prev1, prev2: `(N, C, h, w)` states of frames t−1 and t−2 (not warped).
            condition: `(N, Cc, h, w)` features that predict the offsets (e.g. pre-aligned states and the
                current frame's features).
            flow1, flow2: `(N, 2, h, w)` flows t→t−1 and t→t−2, (x, y) pixels.
        """
        out = self.offset_head(self.offset_net(condition))  # (N, 27·G, h, w)
        residue1, residue2, mask = torch.chunk(out, 3, dim=1)  # each (N, 9·G, h, w)
        per_source = residue1.shape[1] // 2  # (dy, dx) pairs per source: 9·G/2
        offset1 = self.max_residue * torch.tanh(residue1) + flow1.flip(1).repeat(1, per_source, 1, 1)
        offset2 = self.max_residue * torch.tanh(residue2) + flow2.flip(1).repeat(1, per_source, 1, 1)
        offset = torch.cat([offset1, offset2], dim=1)  # (N, 18·G, h, w), (dy, dx) per tap and group
        return deform_conv2d(
            torch.cat([prev1, prev2], dim=1),
            offset,
            self.weight,
            self.bias,
            padding=(1, 1),
            mask=torch.sigmoid(mask),
        )
