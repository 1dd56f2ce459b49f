"""The architecture of a VideoAnyUp network (`config.json`'s fields) and the named configurations."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class VideoAnyUpConfig:
    """Architecture of a VideoAnyUp network (the fields of `config.json`)."""

    basis: int = 128
    basis_size: int = 5
    guidance_channels: int = 32
    guidance_blocks: int = 2
    pyramid_levels: int = 3
    state_channels: int = 32
    propagation_blocks: int = 1
    attention_window: int = 2
    deform_groups: int = 4
    offset_layers: int = 1
    lookahead: int = 2
    flow_scale: int = 2
    key_channels: int = 64
    key_blocks: int = 1
    heads: int = 4
    head_dim: int = 16
    window: int = 7
    prior: bool = True
    hyper_frequencies: int = 16
    hyper_group_dim: int = 32
    hyper_hidden: int = 16
    hyper_depth: int = 3
    temporal_blend: bool = False
    blend_channels: int = 16
    blend_feature_cue: bool = False  # the blend's gate also sees 1 − cos(current, warped previous output)
    backend: str = "sdpa"
    mode: str = "bidirectional"
    # Spatio-temporal attention (DESIGN.md §5.5): side of the window read in each neighbouring frame
    # (0: off, the attention reads frame t only, as every checkpoint written before it did).
    temporal_window: int = 0
    temporal_reach: int = 2  # neighbours t−r…t−1 (and t+1…t+r in bidirectional mode)
    temporal_hidden: int = 16  # width of the head that refines the composed flows (|Δ| ≥ 2)
    # "bilinear": read at the flow's (fractional) target, i.e. frame s resampled onto frame t's cells;
    # "cells": frame s's own cells around the rounded target, which fall between frame t's cells.
    temporal_reads: str = "bilinear"
    temporal_displacement_bias: bool = False  # a learned bias of each candidate's displacement to the query
    # A learned per-cell bias of each neighbour from how frame t's code agrees with it at the flow target
    # (`AgreementBias`): lets the attention leave a frame that disagrees with all of its neighbours there.
    temporal_agreement_bias: bool = False
    # Frame t's HR guidance (the queries) completed from frames t±1's, warped by the flow (`GuidanceFusion`): a
    # blurred frame's queries borrow the edges its neighbours saw (t−1 only in unidirectional mode).
    temporal_guidance: bool = False
    temporal_guidance_hidden: int = 32
    # With `temporal_guidance`: where a neighbour's guidance has far more edge energy than frame t's (a blurred
    # or flat-filled frame), the queries take the neighbour's, aligned by fine flows (`sharpness_prior.py`; no
    # parameters, so it can be switched on for weights trained without it; it runs in eval mode only, so training
    # sees the learned fusion alone).
    temporal_sharpness_prior: bool = False


CONFIGS = {
    # AnyUp's basis (128 filters of 5×5) and heads, a 7×7 window; encoders narrow enough for 2 CPU threads.
    "default": VideoAnyUpConfig(),
    # The default plus the occlusion-aware blend of the warped previous output.
    "blend": VideoAnyUpConfig(temporal_blend=True),
    # The default plus 3×3 windows in the neighbouring frames (spatio-temporal convex attention).
    "temporal": VideoAnyUpConfig(temporal_window=3),
    # Neighbour windows on frame s's own cells, placed against each query by a learned displacement bias.
    "temporal_cells": VideoAnyUpConfig(temporal_window=3, temporal_reads="cells", temporal_displacement_bias=True),
    # temporal_cells plus the per-cell agreement bias of each neighbour.
    "temporal_agreement": VideoAnyUpConfig(
        temporal_window=3, temporal_reads="cells", temporal_displacement_bias=True, temporal_agreement_bias=True
    ),
    # temporal_agreement plus the queries' guidance fused with the warped guidance of frames t±1, and the
    # sharpness prior (the bundled `default` weights' configuration).
    "temporal_guidance": VideoAnyUpConfig(
        temporal_window=3, temporal_reads="cells", temporal_displacement_bias=True, temporal_agreement_bias=True,
        temporal_guidance=True, temporal_sharpness_prior=True,
    ),
    # AnyUp-like widths (128-channel guidance, qk dim 128) for GPU training.
    "large": VideoAnyUpConfig(
        guidance_channels=128, state_channels=64, propagation_blocks=2, key_channels=128, key_blocks=2,
        head_dim=32, deform_groups=8, offset_layers=2,
    ),
    # Tests and laptop experiments.
    "tiny": VideoAnyUpConfig(
        basis=8, guidance_channels=8, guidance_blocks=1, state_channels=8, deform_groups=2, key_channels=8,
        heads=2, head_dim=4, window=3, hyper_frequencies=4, hyper_group_dim=8, hyper_hidden=8, hyper_depth=2,
        blend_channels=4,
    ),
}
