"""Residual blocks without normalisation (EDSR / BasicVSR style)."""

from __future__ import annotations

from torch import Tensor, nn


class ResidualBlock(nn.Module):
    """`x + conv(relu(conv(x)))`, 3×3 convolutions, (N, C, h, w) → (N, C, h, w)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv2(self.relu(self.conv1(x)))


class ResidualStack(nn.Module):
    """3×3 conv `in_channels → channels`, LeakyReLU(0.1), then `num_blocks` residual blocks.

    (N, in_channels, h, w) → (N, channels, h, w).
    """

    def __init__(self, in_channels: int, channels: int, num_blocks: int) -> None:
        super().__init__()
        self.head = nn.Conv2d(in_channels, channels, 3, padding=1)
        self.act = nn.LeakyReLU(0.1, inplace=True)
        self.blocks = nn.Sequential(*(ResidualBlock(channels) for _ in range(num_blocks)))

    def forward(self, x: Tensor) -> Tensor:
        return self.blocks(self.act(self.head(x)))
