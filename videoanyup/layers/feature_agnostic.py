"""The feature-agnostic input layer (DESIGN.md §5.1): a descriptor of any feature map whose size does not
depend on the channel count C.

Every channel of the per-pixel L2-normalised features is filtered with the same M learned k×k basis
filters (zero padding; at the borders the response is rescaled by k² / the count of valid pixels, so a
filter sees the same mean level everywhere), a softmax over the M responses turns each channel into a
distribution over the basis, and the mean over the C channels gives an `(N, M, h, w)` descriptor.

By construction the descriptor is
- invariant to permuting the channels (the mean over C is symmetric),
- invariant to scaling the features by s > 0 (the features are normalised first),
- the same for C = 1 and any other C, with the same weights.
Channels are processed in blocks so memory stays `O(block · M · h · w)` even at C = 1024.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

NORM_EPS = 1e-12


def l2_normalise(feats: Tensor, *, eps: float = NORM_EPS) -> Tensor:
    """Per-pixel L2 normalisation over channels: `(N, C, h, w) -> (N, C, h, w)`.

    A zero vector stays zero (its norm is clamped to `eps`); otherwise the result does not change when the
    features are multiplied by s > 0. With C = 1 the result is ±1 (or 0).
    """
    return feats / feats.norm(dim=1, keepdim=True).clamp_min(eps)


class FeatureAgnosticLayer(nn.Module):
    """Shared basis filters, softmax over the basis, mean over channels.

    Args:
        basis: M, the number of basis filters (the descriptor's channel count).
        kernel_size: k, the side of each basis filter (odd).
        block_values: about how many filter responses are held at once (memory and cache use only; the
            result does not depend on it): channels are filtered in blocks of `block_values // (M·h·w)`.
    """

    def __init__(self, basis: int = 128, kernel_size: int = 5, *, block_values: int = 1 << 21) -> None:
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd, got {kernel_size}")
        self.basis = basis
        self.kernel_size = kernel_size
        self.block_values = block_values
        self.filters = nn.Parameter(torch.empty(basis, 1, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(basis))
        nn.init.kaiming_uniform_(self.filters, a=math.sqrt(5))
        # A learned temperature (log-parametrised) lets training sharpen the softmax over the basis.
        self.log_temperature = nn.Parameter(torch.zeros(()))

    def border_gain(self, h: int, w: int, *, like: Tensor) -> Tensor:
        """`(h·w, 1)` factor k² / (valid pixels under the filter window), row-major pixels."""
        k = self.kernel_size
        ones = torch.ones(1, 1, h, w, device=like.device, dtype=like.dtype)
        count = F.conv2d(ones, torch.ones(1, 1, k, k, device=like.device, dtype=like.dtype), padding=k // 2)
        return ((k * k) / count).reshape(h * w, 1)

    def forward(self, feats: Tensor, *, normalised: bool = False) -> Tensor:
        """Descriptor of a feature map.

        Args:
            feats: `(N, C, h, w)` features, any C ≥ 1.
            normalised: whether `feats` are already per-pixel L2-normalised.
        Returns:
            `(N, M, h, w)` the mean over channels of the softmax over the M basis responses.
        """
        n, c, h, w = feats.shape
        k = self.kernel_size
        unit = feats if normalised else l2_normalise(feats)
        # The normalised features have magnitude ≈ 1/√C; rescale to unit RMS so the basis responses do not
        # vanish at C = 1024. A factor common to all channels keeps permutation and scale invariance.
        unit = unit.to(self.filters.dtype) * math.sqrt(c)
        gain = self.border_gain(h, w, like=unit)  # (h·w, 1)
        temperature = self.log_temperature.exp()
        weight = self.filters.reshape(self.basis, k * k).t() * temperature  # (k², M)
        bias = self.bias * temperature  # (M,)
        block = max(1, self.block_values // (self.basis * h * w))
        frames = []
        outer = max(block, 64)  # channels unfolded at once
        for i in range(n):
            total = unit.new_zeros(h * w, self.basis)
            for first in range(0, c, outer):
                channels = unit[i, first : first + outer, None]  # (c_out, 1, h, w)
                patches_all = F.unfold(channels, k, padding=k // 2).transpose(1, 2)  # (c_out, h·w, k²), a view
                for start in range(0, patches_all.shape[0], block):
                    patches = patches_all[start : start + block]  # (c_blk, h·w, k²)
                    response = torch.matmul(patches, weight)  # (c_blk, h·w, M)
                    response = torch.addcmul(bias, response, gain)  # border-normalised
                    total = total + response.softmax(dim=-1).sum(dim=0)  # (h·w, M)
            frames.append(total.t().reshape(self.basis, h, w))
        return torch.stack(frames) / c  # (N, M, h, w)
