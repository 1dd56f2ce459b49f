"""BasicAVSR: arbitrary-scale video super-resolution (DESIGN.md §4).

Per frame: Laplacian frequency prior → feature extraction; SPyNet flows between neighbours; recurrent
propagation with second-order motion compensation in one of three modes; the hyper-upsampling unit with
scale-only kernels; plus the bilinear (or bicubic, `skip`) upsample of the frame.

Modes:
- `bidirectional` (offline): a backward branch, then a forward branch that also reads the backward state;
- `unidirectional` (online): the forward branch alone; output t never depends on frames after t;
- `lookahead` (delay k): the forward branch, reading the features of frames t+1..t+k warped to t
  (mirrored padding at the end of the clip) in the slot where the backward state would be.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from einops import rearrange
from torch import Tensor

from videoanyup.functional.grid import Region, check_region, output_size
from videoanyup.functional.temporal import padded_indices
from videoanyup.layers.feature_propagation import FeaturePropagation
from videoanyup.layers.frequency_prior import FrequencyPrior
from videoanyup.layers.hyper_upsampler import HyperUpsampler
from videoanyup.layers.residual import ResidualStack
from videoanyup.layers.spynet import SPyNet
from videoanyup.models.pretrained import ConfiguredNetwork
from videoanyup.validation import check_video, compute_dtype
from videoanyup.validation import MAX_OUTPUT_PIXELS, check_output_size

MODES = ("bidirectional", "unidirectional", "lookahead")


@dataclass(frozen=True)
class BasicAVSRConfig:
    """Architecture of a BasicAVSR network (the fields of `config.json`)."""

    channels: int = 64
    extract_blocks: int = 5
    propagation_blocks: int = 17
    upsample_blocks: int = 5
    pyramid_levels: int = 3
    attention_window: int = 2
    deform_groups: int = 16
    offset_layers: int = 3
    lookahead: int = 2
    lookahead_blocks: int = 1
    kernel_size: int = 3
    fold: str = "fold"
    hyper_frequencies: int = 16
    hyper_group_dim: int = 32
    hyper_hidden: int = 16
    hyper_depth: int = 3
    tile_size: int = 192
    mode: str = "bidirectional"
    skip: str = "bilinear"  # the frame interpolation the output residual is added to ("bilinear": the paper)


CONFIGS = {
    # ≈ 6.2 M parameters (SPyNet's 1.44 M included), the size reported for the paper's model.
    "paper": BasicAVSRConfig(),
    # Trains on a laptop CPU: half the channels, few blocks, 4 deformable groups and a 1-layer offset net; the
    # residual is added to the bicubic upsample, so that a short training starts from (and refines) bicubic.
    "lite": BasicAVSRConfig(
        channels=32,
        extract_blocks=2,
        propagation_blocks=3,
        upsample_blocks=2,
        deform_groups=4,
        offset_layers=1,
        skip="bicubic",
    ),
}


class BasicAVSR(ConfiguredNetwork):
    """Arbitrary-scale video super-resolution network.

    Args:
        config: the architecture; see `CONFIGS` for the named ones.
        trained_modes: the propagation modes the weights were trained for (None: untrained, all allowed).
    """

    config_class = BasicAVSRConfig
    configs = CONFIGS
    modes = MODES
    stream_modes = ("unidirectional", "lookahead")
    kind = "basicavsr"

    def __init__(self, config: BasicAVSRConfig | None = None, *, trained_modes: Sequence[str] | None = None) -> None:
        super().__init__(BasicAVSRConfig() if config is None else config, trained_modes)
        config = self.config
        c = config.channels
        self.spynet = SPyNet()
        self.prior = FrequencyPrior(3, config.pyramid_levels)
        self.extractor = ResidualStack(6, c, config.extract_blocks)

        self.propagation = FeaturePropagation(
            c,
            blocks=config.propagation_blocks,
            window=config.attention_window,
            deform_groups=config.deform_groups,
            offset_layers=config.offset_layers,
            lookahead=config.lookahead,
            lookahead_blocks=config.lookahead_blocks,
        )
        self.upsampler = HyperUpsampler(
            c,
            num_blocks=config.upsample_blocks,
            kernel_size=config.kernel_size,
            fold=config.fold,
            tile_size=config.tile_size,
            skip=config.skip,
            hyper=dict(
                frequencies=config.hyper_frequencies,
                group_dim=config.hyper_group_dim,
                hidden=config.hyper_hidden,
                depth=config.hyper_depth,
            ),
        )

    # -- the method's steps -----------------------------------------------------------------------
    def extract(self, frames: Tensor) -> Tensor:
        """Features with the frequency prior: `(N, 3, h, w)` → `(N, C, h, w)`."""
        return self.extractor(torch.cat([frames, self.prior(frames)], dim=1))

    def flows(self, ref: Tensor, supp: Tensor) -> Tensor:
        """SPyNet flows between frame sequences: `(B, T', 3, h, w)` ×2 → `(B, T', 2, h, w)`, ref → supp."""
        b = ref.shape[0]
        flow = self.spynet(rearrange(ref, "b t c h w -> (b t) c h w"), rearrange(supp, "b t c h w -> (b t) c h w"))
        return rearrange(flow, "(b t) c h w -> b t c h w", b=b)

    def forward(
        self,
        lr: Tensor,
        *,
        scale: float | Sequence[float] | None = None,
        size: Sequence[int] | None = None,
        mode: str | None = None,
        region: Region | None = None,
        max_pixels: int = MAX_OUTPUT_PIXELS,
    ) -> Tensor:
        """Upscale a clip.

        Args:
            lr: `(B, T, 3, h, w)` RGB in [0, 1] (or one frame `(B, 3, h, w)`).
            scale: `a` or `(a, b)`: output `(round(a·h), round(b·w))`. Exactly one of scale and size.
            size: `(H, W)`.
            mode: "bidirectional", "unidirectional" or "lookahead" (default: the config's).
            region: `(top, bottom, left, right)` of the HR grid to compute (e.g. a training crop).
            max_pixels: the most pixels `H·W` an output frame may have (`validation.check_output_size`).
        Returns:
            `(B, T, 3, H, W)` (or the region; `(B, 3, …)` for a single frame), in the dtype of `lr`.
        """
        lr, was_image = check_video(lr, "lr", unit_range=True)
        in_dtype, lr = lr.dtype, lr.to(compute_dtype(self))  # float64 / float16 in: computed in the weights' dtype
        mode = self.check_mode(mode)
        b, t, _, h, w = lr.shape
        hr_size = output_size(h, w, scale=scale, size=size)
        check_output_size(hr_size, (h, w), scale=scale, max_pixels=max_pixels)
        region = check_region(region, hr_size)

        feats = rearrange(self.extract(rearrange(lr, "b t c h w -> (b t) c h w")), "(b t) c h w -> b t c h w", b=b)
        flows_to_prev = self.flows(lr[:, 1:], lr[:, :-1]) if t > 1 and mode != "perframe" else None  # f_{t→t−1}
        flows_to_next = self.flows(lr[:, :-1], lr[:, 1:]) if t > 1 and mode == "bidirectional" else None  # f_{t→t+1}
        steps = None
        if mode == "lookahead":  # flows between consecutive mirrored-padded frames, (B, T+k−1, 2, h, w)
            padded = padded_indices(t, self.config.lookahead)
            steps = self.flows(lr[:, padded[:-1]], lr[:, padded[1:]])
        states = self.propagation.iterate(
            feats, mode=mode, flows_to_prev=flows_to_prev, flows_to_next=flows_to_next, lookahead_steps=steps
        )  # the one recurrent driver, shared with VideoAnyUp; the streams step its loop
        outputs = [self.upsampler(state, lr[:, i], hr_size, region) for i, state in enumerate(states)]
        out = torch.stack(outputs, dim=1)  # (B, T, 3, th, tw)
        return (out[:, 0] if was_image else out).to(in_dtype)

    def stream(self, *, scale=None, size=None, mode: str | None = None, compile: bool | str = False,
               max_pixels: int = MAX_OUTPUT_PIXELS):
        """An online upscaler for "unidirectional" or "lookahead" mode: push frames, get HR frames back.

        `compile=True` runs each frame's step through `torch.compile` (see `BasicAVSRStream`)."""
        from videoanyup.models.basicavsr_stream import BasicAVSRStream

        return BasicAVSRStream(self, scale=scale, size=size, mode=mode, compile=compile, max_pixels=max_pixels)
