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
        channel_block: channels filtered at once (memory bound only; the result does not depend on it).
    """

    def __init__(self, basis: int = 128, kernel_size: int = 5, *, channel_block: int = 64) -> None:
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd, got {kernel_size}")
        self.basis = basis
        self.kernel_size = kernel_size
        self.channel_block = channel_block
        self.filters = nn.Parameter(torch.empty(basis, 1, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(basis))
        nn.init.kaiming_uniform_(self.filters, a=math.sqrt(5))
        # One filter response per normalised feature of magnitude ≈ 1/√C is tiny; a learned temperature
        # (log-parametrised) lets training sharpen the softmax over the basis.
        self.log_temperature = nn.Parameter(torch.zeros(()))

    def border_gain(self, h: int, w: int, *, like: Tensor) -> Tensor:
        """`(1, 1, h, w)` factor k² / (valid pixels under the filter window)."""
        k = self.kernel_size
        ones = torch.ones(1, 1, h, w, device=like.device, dtype=like.dtype)
        count = F.conv2d(ones, torch.ones(1, 1, k, k, device=like.device, dtype=like.dtype), padding=k // 2)
        return (k * k) / count

    def forward(self, feats: Tensor, *, normalised: bool = False) -> Tensor:
        """Descriptor of a feature map.

        Args:
            feats: `(N, C, h, w)` features, any C ≥ 1.
            normalised: whether `feats` are already per-pixel L2-normalised.
        Returns:
            `(N, M, h, w)` the mean over channels of the softmax over the M basis responses.
        """
        n, c, h, w = feats.shape
        unit = feats if normalised else l2_normalise(feats)
        unit = unit.to(self.filters.dtype)
        gain = self.border_gain(h, w, like=unit)  # (1, 1, h, w)
        # The normalised features have magnitude ≈ 1/√C; rescale to unit RMS so the basis responses do not
        # vanish at C = 1024. Multiplying by √C keeps permutation and scale invariance.
        unit = unit * math.sqrt(c)
        temperature = self.log_temperature.exp()
        total = unit.new_zeros(n, self.basis, h, w)
        for start in range(0, c, self.channel_block):
            block = unit[:, start : start + self.channel_block]  # (N, c_blk, h, w)
            cb = block.shape[1]
            flat = block.reshape(n * cb, 1, h, w)  # (N·c_blk, 1, h, w)
            response = F.conv2d(flat, self.filters, padding=self.kernel_size // 2)  # (N·c_blk, M, h, w)
            response = (response * gain + self.bias[:, None, None]) * temperature
            probs = response.softmax(dim=1).reshape(n, cb, self.basis, h, w)  # (N, c_blk, M, h, w)
            total = total + probs.sum(dim=1)
        return total / c
