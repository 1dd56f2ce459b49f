"""The architecture of a VideoAnyUp network (`config.json`'s fields) and the named configurations.

`CONFIGS["default"]` is exactly the architecture of the bundled `default` weights (a test holds them equal), so
`VideoAnyUp.from_config("default")` and `torch.hub.load(..., pretrained=False)` build the network those weights
need. Two fields are ablations (docs/methods.md says what each measured): `hyper_kernel` and `neighbour_window`.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class VideoAnyUpConfig:
    """Architecture of a VideoAnyUp network (the fields of `config.json`)."""

    # Feature-agnostic input layer (AnyUp): M basis filters of side `basis_size`.
    basis: int = 128
    basis_size: int = 5
    # RGB guidance encoder, with the Laplacian frequency prior of `pyramid_levels` band-pass levels.
    guidance_channels: int = 32
    guidance_blocks: int = 2
    pyramid_levels: int = 3
    # Propagation of a state over the LR grid (BasicAVSR's machinery): `alignment_window` is the side of the
    # fine motion compensation's window of integer neighbours around each flow target (2 or 3).
    state_channels: int = 32
    propagation_blocks: int = 1
    alignment_window: int = 2
    deform_groups: int = 4
    offset_layers: int = 1
    lookahead: int = 2  # k, the future frames of the look-ahead mode
    flow_scale: int = 4  # SPyNet runs on `flow_scale` × the LR grid (at most the video's size)
    # RGB-guided window attention: `window` × `window` LR cells of frame t.
    key_channels: int = 64
    key_blocks: int = 1
    heads: int = 4
    head_dim: int = 16
    window: int = 7
    hyper_kernel: bool = True  # ablation: the logit bias over (scale, HR phase, window offset)
    hyper_frequencies: int = 16
    hyper_group_dim: int = 32
    hyper_hidden: int = 16
    hyper_depth: int = 3
    # Neighbouring frames: a `neighbour_window` × `neighbour_window` window of each neighbour t±1 … t±reach's own
    # cells joins the attention, and the queries' guidance is fused with frames t±1's (ablation: 0, frame t's
    # window alone and no fusion; the state is still propagated).
    neighbour_window: int = 3
    temporal_reach: int = 2
    temporal_hidden: int = 16  # width of the offset head, the displacement and agreement biases
    fusion_hidden: int = 32  # width of the guidance fusion
    shot_hidden: int = 16  # width of the shot test
    backend: str = "sdpa"  # attention kernels: "sdpa", "math" or "xformers" (CUDA)
    mode: str = "bidirectional"


CONFIGS = {
    # The bundled `default` weights' architecture: AnyUp's basis (128 filters of 5×5) and heads, a 7×7 window,
    # 3×3 windows in t±1, t±2; encoders narrow enough to train on 2 CPU cores.
    "default": VideoAnyUpConfig(),
    # AnyUp-like widths (128-channel guidance, qk dim 128) for GPU training.
    "large": VideoAnyUpConfig(
        guidance_channels=128, state_channels=64, propagation_blocks=2, key_channels=128, key_blocks=2,
        head_dim=32, deform_groups=8, offset_layers=2,
    ),
    # The same parts at tiny widths: tests and laptop experiments.
    "tiny": VideoAnyUpConfig(
        basis=8, guidance_channels=8, guidance_blocks=1, state_channels=8, deform_groups=2, key_channels=8,
        heads=2, head_dim=4, window=3, hyper_frequencies=4, hyper_group_dim=8, hyper_hidden=8, hyper_depth=2,
        temporal_hidden=8, fusion_hidden=8, shot_hidden=8,
    ),
}
