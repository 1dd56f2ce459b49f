"""Fine alignment: attention over the integer neighbours of a flow target (implicit alignment, IART-style).

A backward warp interpolates the source bilinearly at `p + flow(p)`. Here every position p instead attends
to the small window of integer source pixels around its flow target (2×2: the bilinear neighbours; 3×3:
the rounded target and its 8 neighbours). The logit of a neighbour comes from an MLP on the query feature
at p, the key feature of the neighbour, and a sinusoidal encoding of the neighbour's sub-pixel offset
from the target. The bilinear weights enter as a log-prior and the MLP's last layer starts at zero, so an
untrained module is exactly the bilinear warp with border padding.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from videoanyup.functional.warp import base_grid
from videoanyup.layers.positional_encoding import log_frequencies, sinusoidal_encoding

_PRIOR_FLOOR = 1e-6  # log-prior floor for neighbours with zero bilinear weight (3×3 window)


class FlowGuidedWindowAttention(nn.Module):
    """Align `source` to the query frame through attention over a window around each flow target.

    Args:
        channels: C of the source (the value and key features).
        query_channels: channels of the query-frame features.
        window: 2 (bilinear neighbours) or 3 (3×3 around the rounded target).
        hidden: width of the logit MLP.
        frequencies: frequencies of the offset encoding (2^linspace(0, 4, n) − 1 rad per pixel).
    """

    def __init__(self, channels: int, query_channels: int, *, window: int = 2, hidden: int = 32, frequencies: int = 8) -> None:
        super().__init__()
        if window not in (2, 3):
            raise ValueError(f"window must be 2 or 3, got {window}")
        self.window = window
        self.query_proj = nn.Conv2d(query_channels, hidden, 1)
        self.key_proj = nn.Conv2d(channels, hidden, 1)
        self.register_buffer("frequencies", log_frequencies(frequencies, 4.0).float(), persistent=False)
        self.offset_proj = nn.Linear(2 * 2 * frequencies, hidden)
        self.logit = nn.Linear(hidden, 1)
        nn.init.zeros_(self.logit.weight)
        nn.init.zeros_(self.logit.bias)
        self.act = nn.LeakyReLU(0.1)

    def _neighbour_offsets(self, like: Tensor) -> Tensor:
        span = (0, 1) if self.window == 2 else (-1, 0, 1)
        pairs = [(dx, dy) for dy in span for dx in span]
        return torch.tensor(pairs, device=like.device, dtype=like.dtype)  # (n, 2), (x, y)

    def forward(self, query: Tensor, source: Tensor, flow: Tensor) -> Tensor:
        """Args:
            query: `(N, Cq, h, w)` features of the frame being aligned to.
            source: `(N, C, h, w)` features to align.
            flow: `(N, 2, h, w)` flow from the query frame to the source frame, (x, y) pixels.
        Returns:
            `(N, C, h, w)` aligned source.
        """
        n, c, h, w = source.shape
        target = base_grid(h, w, like=flow) + flow  # (N, 2, h, w)
        anchor = target.floor() if self.window == 2 else target.round()
        offsets = self._neighbour_offsets(flow)  # (K, 2)
        position = anchor[:, None] + offsets[None, :, :, None, None]  # (N, K, 2, h, w)
        delta = position - target[:, None]  # (N, K, 2, h, w), neighbour minus target
        tent = (1.0 - delta.abs()).clamp(min=0.0).prod(dim=2)  # (N, K, h, w), bilinear weights
        prior = tent.clamp(min=_PRIOR_FLOOR).log()

        limits = torch.tensor([w - 1, h - 1], device=flow.device, dtype=flow.dtype).view(1, 1, 2, 1, 1)
        clamped = torch.minimum(position.clamp(min=0.0), limits).long()  # border padding
        flat_index = (clamped[:, :, 1] * w + clamped[:, :, 0]).flatten(1)  # (N, K·h·w)

        keys = self.key_proj(source)  # (N, hidden, h, w)
        values_and_keys = torch.cat([source, keys], dim=1).flatten(2).transpose(1, 2)  # (N, h·w, C + hidden)
        gathered = torch.gather(
            values_and_keys, 1, flat_index[..., None].expand(-1, -1, values_and_keys.shape[-1])
        ).view(n, offsets.shape[0], h, w, -1)  # (N, K, h, w, C + hidden)
        values, keys_n = gathered.split([c, keys.shape[1]], dim=-1)

        q = self.query_proj(query).permute(0, 2, 3, 1)[:, None]  # (N, 1, h, w, hidden)
        enc = sinusoidal_encoding(delta.permute(0, 1, 3, 4, 2), self.frequencies)  # (N, K, h, w, 4F)
        hidden = self.act(q + keys_n + self.offset_proj(enc))  # (N, K, h, w, hidden)
        logits = self.logit(hidden).squeeze(-1) + prior  # (N, K, h, w)
        weights = torch.softmax(logits, dim=1)
        aligned = (weights[..., None] * values).sum(dim=1)  # (N, h, w, C)
        return aligned.permute(0, 3, 1, 2).contiguous()
