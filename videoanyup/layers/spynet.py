"""SPyNet: spatial-pyramid optical flow (Ranjan & Black 2017), as used by BasicVSR/BasicVSR++.

Six pyramid levels; at each level a basic module of five 7×7 convolutions (32-64-32-16-2 filters, ReLU
between) refines the flow from the coarser level, which is upsampled ×2 and scaled ×2. Inputs are
ImageNet-normalised. The parameter names follow the published `spynet_20210409-c6c1bd09.pth` layout
(`basic_module.{level}.basic_module.{j}.conv.{weight,bias}`), so those weights load unchanged with
`load_published`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from videoanyup.functional.warp import flow_warp

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
LEVELS = 6
BASIC_MODULE_WIDTHS = (8, 32, 64, 32, 16, 2)


class _ConvUnit(nn.Module):
    """A 7×7 convolution under the name `conv`, as in the published key layout."""

    def __init__(self, in_channels: int, out_channels: int, activate: bool) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=7, padding=3)
        self.activate = activate

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv(x)
        return F.relu(x) if self.activate else x


class SPyNetBasicModule(nn.Module):
    """One pyramid level: `[ref, warped supp, flow]` (N, 8, h, w) → flow residual (N, 2, h, w)."""

    def __init__(self) -> None:
        super().__init__()
        widths = BASIC_MODULE_WIDTHS
        self.basic_module = nn.Sequential(
            *(_ConvUnit(widths[i], widths[i + 1], activate=i < len(widths) - 2) for i in range(len(widths) - 1))
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.basic_module(x)


class SPyNet(nn.Module):
    """Flow from `ref` to `supp` (so that `flow_warp(supp, flow) ≈ ref`), for RGB frames in [0, 1]."""

    def __init__(self) -> None:
        super().__init__()
        self.basic_module = nn.ModuleList(SPyNetBasicModule() for _ in range(LEVELS))
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def _pyramid(self, x: Tensor) -> list[Tensor]:
        """Normalised image pyramid, coarsest first: LEVELS entries, sizes h/32 … h."""
        levels = [(x - self.mean.to(x)) / self.std.to(x)]
        for _ in range(LEVELS - 1):
            levels.append(F.avg_pool2d(levels[-1], kernel_size=2, stride=2, count_include_pad=False))
        return levels[::-1]

    def _flow_at_multiple_of_32(self, ref: Tensor, supp: Tensor) -> Tensor:
        """Flow for frames whose size is a multiple of 32: `(N, 3, h, w)` ×2 → `(N, 2, h, w)`."""
        refs, supps = self._pyramid(ref), self._pyramid(supp)
        n, _, h, w = refs[0].shape
        flow = refs[0].new_zeros(n, 2, h, w)
        for level, (ref_l, supp_l) in enumerate(zip(refs, supps)):
            if level > 0:
                flow = 2.0 * F.interpolate(flow, scale_factor=2.0, mode="bilinear", align_corners=True)
            warped = flow_warp(supp_l, flow, padding_mode="border")
            flow = flow + self.basic_module[level](torch.cat([ref_l, warped, flow], dim=1))
        return flow

    def forward(self, ref: Tensor, supp: Tensor) -> Tensor:
        """Args: `ref`, `supp` (N, 3, h, w) in [0, 1]. Returns: flow (N, 2, h, w), channels (x, y), pixels."""
        if ref.shape != supp.shape or ref.dim() != 4 or ref.shape[1] != 3:
            raise ValueError(f"ref and supp must both be (N, 3, h, w), got {tuple(ref.shape)} and {tuple(supp.shape)}")
        h, w = ref.shape[-2:]
        h_up, w_up = math.ceil(h / 32) * 32, math.ceil(w / 32) * 32
        if (h_up, w_up) != (h, w):
            ref = F.interpolate(ref, size=(h_up, w_up), mode="bilinear", align_corners=False)
            supp = F.interpolate(supp, size=(h_up, w_up), mode="bilinear", align_corners=False)
        flow = self._flow_at_multiple_of_32(ref, supp)  # (N, 2, h_up, w_up)
        if (h_up, w_up) != (h, w):
            flow = F.interpolate(flow, size=(h, w), mode="bilinear", align_corners=False)
            flow = flow * flow.new_tensor([w / w_up, h / h_up]).view(1, 2, 1, 1)
        return flow

    def load_published(self, state: Mapping[str, Tensor]) -> None:
        """Load the published `spynet_20210409-c6c1bd09.pth` (or BasicSR's `basic_module.i.basic_module.2j`).

        Accepts the raw state dict or a checkpoint that wraps it under "state_dict" / "params", with or
        without a "spynet." / "generator.spynet." prefix. Raises ValueError naming missing/unexpected keys.
        """
        from videoanyup.checkpoint import load_state_strict

        for wrapper in ("state_dict", "params"):
            if wrapper in state and isinstance(state[wrapper], Mapping):
                state = state[wrapper]
        converted: dict[str, Tensor] = {}
        for key, value in state.items():
            if key.endswith(("mean", "std")) and "basic_module" not in key:
                continue  # the published file stores the normalisation constants as buffers
            key = key.split("spynet.", 1)[-1] if "spynet." in key else key
            parts = key.split(".")
            # BasicSR layout: basic_module.L.basic_module.{0,2,4,6,8}.{weight,bias}
            if len(parts) == 5 and parts[2] == "basic_module" and parts[3].isdigit():
                key = ".".join(parts[:3] + [str(int(parts[3]) // 2), "conv", parts[4]])
            converted[key] = value
        load_state_strict(self, converted, "the published SPyNet checkpoint")
