"""Batch normalisation for SPyNet's pretraining only, folded back into the convolutions for export.

SPyNet's basic modules are plain 7×7 convolutions with ReLUs; trained from scratch on a CPU budget they learn
very slowly (the first layers see inputs whose contrast varies tenfold between images). During pretraining each
hidden convolution is followed by a `BatchNorm2d`; `fold_batch_norm` merges its running statistics and affine
parameters into the convolution before the weights are saved, so the exported network has exactly the published
architecture and key layout (`basic_module.L.basic_module.j.conv.*`) and computes what the normalised network
computes in eval mode.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
import torch.nn.functional as F

from videoanyup.layers.spynet import SPyNet


class NormalisedConvUnit(nn.Module):
    """`conv` → `norm` (BatchNorm2d) → ReLU; stands in for a hidden `_ConvUnit` during pretraining."""

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        self.conv = conv
        self.norm = nn.BatchNorm2d(conv.out_channels, momentum=0.05)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.norm(self.conv(x)))


def add_batch_norm(spynet: SPyNet) -> SPyNet:
    """Put a BatchNorm2d after every hidden convolution of every level (in place); returns `spynet`."""
    for module in spynet.basic_module:
        units = module.basic_module
        for j in range(len(units) - 1):
            if not isinstance(units[j], NormalisedConvUnit):
                units[j] = NormalisedConvUnit(units[j].conv)
    return spynet


def has_batch_norm(spynet: SPyNet) -> bool:
    return any(isinstance(unit, NormalisedConvUnit) for module in spynet.basic_module for unit in module.basic_module)


def fold_batch_norm(spynet: SPyNet) -> SPyNet:
    """A plain SPyNet (published layout) equal to `spynet` in eval mode: each normalised unit's running statistics
    and affine parameters are merged into its convolution. `spynet` is left unchanged."""
    plain = SPyNet()
    with torch.no_grad():
        for module, target in zip(spynet.basic_module, plain.basic_module):
            for unit, out in zip(module.basic_module, target.basic_module):
                weight, bias = unit.conv.weight, unit.conv.bias
                if isinstance(unit, NormalisedConvUnit):
                    norm = unit.norm
                    scale = norm.weight / torch.sqrt(norm.running_var + norm.eps)  # (C_out,)
                    weight = weight * scale.view(-1, 1, 1, 1)
                    bias = (bias - norm.running_mean) * scale + norm.bias
                out.conv.weight.copy_(weight)
                out.conv.bias.copy_(bias)
    return plain.to(next(spynet.parameters()).device)
