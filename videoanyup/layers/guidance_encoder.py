"""The RGB guidance encoder of VideoAnyUp (DESIGN.md §5.2).

A per-pixel encoder of the guidance frame: `[RGB ‖ Laplacian frequency prior]` (the prior of part one)
→ one 3×3 convolution (local edges) → pointwise residual blocks. It runs at the output grid, where the
HR queries live, so everything after the first layer is 1×1: its cost per output pixel is a few
thousand multiply-adds whatever the scale. The same features, average-pooled to the LR grid, enter the
keys (`pool`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from videoanyup.layers.frequency_prior import FrequencyPrior


class PointwiseBlock(nn.Module):
    """`x + conv1x1(LeakyReLU(conv1x1(x)))`, `(N, C, H, W) -> (N, C, H, W)`."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 1)
        self.conv2 = nn.Conv2d(channels, channels, 1)
        self.act = nn.LeakyReLU(0.1)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv2(self.act(self.conv1(x)))


class GuidanceEncoder(nn.Module):
    """RGB frames → guidance features.

    Args:
        channels: output channels Cg.
        blocks: pointwise residual blocks after the 3×3 stem.
        levels: band-pass levels of the frequency prior.
    """

    def __init__(self, channels: int = 32, blocks: int = 2, *, levels: int = 3) -> None:
        super().__init__()
        self.channels = channels
        self.prior = FrequencyPrior(3, levels)
        self.stem = nn.Conv2d(6, channels, 3, padding=1, padding_mode="replicate")
        self.act = nn.LeakyReLU(0.1)
        self.blocks = nn.Sequential(*(PointwiseBlock(channels) for _ in range(blocks)))

    def forward(self, frames: Tensor) -> Tensor:
        """`(N, 3, H, W)` RGB in [0, 1] → `(N, Cg, H, W)`."""
        frames = frames.to(self.stem.weight.dtype)
        x = torch.cat([frames - 0.5, self.prior(frames)], dim=1)  # (N, 6, H, W)
        return self.blocks(self.act(self.stem(x)))

    @staticmethod
    def pool(features: Tensor, lr_size: tuple[int, int]) -> Tensor:
        """Average the guidance features over each LR cell: `(N, Cg, H, W) -> (N, Cg, h, w)`."""
        return F.adaptive_avg_pool2d(features, lr_size)


def resize_guidance(video: Tensor, size: tuple[int, int]) -> Tensor:
    """Frames `(N, 3, H0, W0)` resized to the output grid `size = (H, W)` (bilinear, antialiased when
    shrinking); unchanged when the sizes agree."""
    if tuple(video.shape[-2:]) == tuple(size):
        return video
    shrink = size[0] < video.shape[-2] or size[1] < video.shape[-1]
    return F.interpolate(video, size=size, mode="bilinear", align_corners=False, antialias=shrink)
