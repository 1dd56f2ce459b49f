"""Occlusion-aware blend of the previous HR output into the current one (DESIGN.md §5.5, optional).

The output of t−1 is backward-warped to t with the flow t→t−1 (border padding, so every warped vector
is a convex combination of output vectors of t−1), and a gate m ∈ (0, 1) predicted from the guidance
decides how much of it to keep:

    y_t = (1 − m) · a_t + m · warp(y_{t−1}),

still a convex combination of input feature vectors. The gate sees the guidance (the current guidance
features, the warped previous ones and their difference, which is large where the flow is wrong or the
pixel was occluded) and, optionally (`feature_cue`), how much the two feature maps disagree,
1 − cos(a_t, warp(y_{t−1})) per pixel: a cue the guidance cannot give (the features may change where the
image does not), and one that does not change when the features are scaled or their channels permuted, so
scaling the features still scales the output.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from videoanyup.functional.warp import flow_warp, resize_flow


class TemporalBlend(nn.Module):
    """Gated blend of the warped previous output.

    Args:
        guidance_channels: Cg of the guidance features.
        hidden: width of the gate network.
        initial_gate: the gate's value at initialisation (a small value keeps the blend close to the
            current output before training).
        feature_cue: also feed the gate the features' disagreement 1 − cos(current, warped previous).
    """

    def __init__(
        self, guidance_channels: int, *, hidden: int = 16, initial_gate: float = 0.1, feature_cue: bool = False
    ) -> None:
        super().__init__()
        self.feature_cue = feature_cue
        self.gate = nn.Sequential(
            nn.Conv2d(3 * guidance_channels + int(feature_cue), hidden, 3, padding=1, padding_mode="replicate"),
            nn.LeakyReLU(0.1),
            nn.Conv2d(hidden, 1, 1),
        )
        nn.init.zeros_(self.gate[-1].weight)
        nn.init.constant_(self.gate[-1].bias, float(torch.logit(torch.tensor(initial_gate))))

    def gate_map(
        self, guidance: Tensor, previous_guidance: Tensor, flow: Tensor, disagreement: Tensor | None = None
    ) -> Tensor:
        """`(N, 1, H, W)` gate in (0, 1) from `(N, Cg, H, W)` guidance of t and t−1, the HR flow t→t−1 and, with
        `feature_cue`, the features' disagreement `(N, 1, H, W)`."""
        if self.feature_cue != (disagreement is not None):
            raise ValueError(f"disagreement must be given exactly when feature_cue is on ({self.feature_cue})")
        warped = flow_warp(previous_guidance, flow.to(previous_guidance.dtype), padding_mode="border")
        cues = [guidance, warped, (guidance - warped).abs()]
        if disagreement is not None:
            cues.append(disagreement.to(guidance.dtype))
        return torch.sigmoid(self.gate(torch.cat(cues, dim=1)))

    @staticmethod
    def disagreement(current: Tensor, warped: Tensor) -> Tensor:
        """1 − cos of `(N, C, H, W)` feature maps per pixel, `(N, 1, H, W)` in [0, 2] (1 where a map is zero)."""
        return 1.0 - F.cosine_similarity(current, warped, dim=1, eps=1e-8).unsqueeze(1)

    def forward(
        self, current: Tensor, previous: Tensor, flow: Tensor, guidance: Tensor, previous_guidance: Tensor
    ) -> Tensor:
        """Blend.

        Args:
            current: `(N, C, H, W)` the attention output of frame t.
            previous: `(N, C, H, W)` the final output of frame t−1.
            flow: `(N, 2, H, W)` flow t→t−1 in HR pixels.
            guidance, previous_guidance: `(N, Cg, H, W)` guidance features of t and t−1.
        Returns:
            `(N, C, H, W)`.
        """
        warped = flow_warp(previous, flow.to(previous.dtype), padding_mode="border")  # (N, C, H, W)
        cue = self.disagreement(current, warped) if self.feature_cue else None
        gate = self.gate_map(guidance, previous_guidance, flow, cue).to(current.dtype)  # (N, 1, H, W)
        return torch.lerp(current, warped, gate)

    def blend_clip(
        self,
        chunk: Tensor,
        previous: Tensor | None,
        guidance: Tensor,
        previous_guidance: Tensor | None,
        flows: Tensor | None,
        t0: int,
    ) -> Tensor:
        """Blend the warped output of t−1 into frames `t0, t0+1, …` of one clip, in order.

        Args:
            chunk: `(n, C, H, W)` attention outputs of frames t0..t0+n−1.
            previous: `(1, C, H, W)` final output of frame t0 − 1 (None when t0 = 0).
            guidance: `(n, Cg, H, W)` HR guidance of the chunk; previous_guidance: `(1, Cg, H, W)` of t0 − 1.
            flows: `(T − 1, 2, fh, fw)` the clip's flows t→t−1 on the flow grid (None when T = 1).
        Returns:
            `(n, C, H, W)`: `chunk` itself, blended in place, when no gradient is recorded.
        """
        hr_size = tuple(chunk.shape[-2:])
        frames = list(chunk.split(1))
        for k in range(len(frames)):
            j = t0 + k
            if j == 0:
                continue
            flow = resize_flow(flows[j - 1 : j], hr_size)  # (1, 2, H, W), f_{j→j−1}
            before = frames[k - 1] if k > 0 else previous
            before_guidance = guidance[k - 1 : k] if k > 0 else previous_guidance
            frames[k] = self(frames[k], before, flow, guidance[k : k + 1], before_guidance)
        if torch.is_grad_enabled():
            return torch.cat(frames)
        for k, frame in enumerate(frames):
            chunk[k] = frame[0]
        return chunk
