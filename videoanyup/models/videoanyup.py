"""VideoAnyUp: temporally consistent upsampling of the features of any backbone (DESIGN.md §5).

The method, per clip:

1. per frame: per-pixel normalised features → the feature-agnostic descriptor; the RGB guidance encoded at
   the output grid (the queries) and pooled to the LR grid (the keys); the frame code; the frame's
   contrast-normalised structure (`frame_cues.py`);
2. on the LR grid: SPyNet flows between consecutive guidance frames (at `flow_scale` × the LR grid), the
   learned shot test of each pair (`ShotTest`: a cut stops everything that crosses it), a hidden state
   propagated in the mode (bidirectional, unidirectional, look-ahead or per frame; `FeaturePropagation`),
   the keys;
3. per frame (`frame_step.frame_step`): the windows of the neighbouring frames' own cells placed by the
   composed flows, weighted by the displacement and agreement biases (`TemporalCandidates`); the queries'
   guidance fused with frames t±1's (`GuidanceFusion`); window attention from the HR queries to the LR keys
   whose head-averaged weights mix the raw LR features of every candidate.

Every output vector is a convex combination of input feature vectors (of several frames), so the output lives
in the input's feature space whatever C is. What decides how much frame t leans on its neighbours is learned
and runs the same in training and inference (no layer behaves differently in `train()` and `eval()`).

`forward` returns the whole `(B, T, C, H, W)` output; `iter_chunks` yields it a frame chunk at a time; a
stream (`stream()`) runs the same per-frame step as frames arrive.
"""

from __future__ import annotations

from typing import Iterator, Sequence

import torch
from torch import Tensor

from videoanyup.functional.grid import output_size
from videoanyup.layers.feature_agnostic import FeatureAgnosticLayer, l2_normalise
from videoanyup.layers.feature_propagation import MODES, FeaturePropagation
from videoanyup.layers.guidance_encoder import GuidanceEncoder, resize_guidance
from videoanyup.layers.guidance_fusion import GuidanceFusion
from videoanyup.layers.residual import ResidualStack
from videoanyup.layers.shot_test import ShotTest
from videoanyup.layers.spynet import SPyNet
from videoanyup.layers.temporal_candidates import TemporalCandidates, neighbour_deltas
from videoanyup.layers.window_attention import WindowAttention
from videoanyup.models.clip_source import ClipSource, prepare_clip
from videoanyup.models.frame_step import frame_step
from videoanyup.models.pretrained import ConfiguredNetwork
from videoanyup.models.videoanyup_config import CONFIGS, VideoAnyUpConfig
from videoanyup.validation import check_positive_int, check_video, compute_dtype
from videoanyup.validation import MAX_OUTPUT_PIXELS, check_output_size

KIND = "videoanyup"


class VideoAnyUp(ConfiguredNetwork):
    """Feature upsampler guided by the RGB video.

    Args:
        config: the architecture; see `CONFIGS` for the named ones.
        trained_modes: the propagation modes the weights were trained for (None: untrained, all allowed).
    """

    config_class = VideoAnyUpConfig
    configs = CONFIGS
    modes = MODES
    stream_modes = ("unidirectional", "lookahead", "perframe")
    kind = KIND

    def __init__(self, config: VideoAnyUpConfig | None = None, *, trained_modes: Sequence[str] | None = None) -> None:
        super().__init__(VideoAnyUpConfig() if config is None else config, trained_modes)
        config = self.config
        s, g = config.state_channels, config.guidance_channels
        self.agnostic = FeatureAgnosticLayer(config.basis, config.basis_size)
        self.guidance = GuidanceEncoder(g, config.guidance_blocks, levels=config.pyramid_levels)
        self.spynet = SPyNet()
        self.encode_code = ResidualStack(config.basis + g, s, 1)
        self.propagation = FeaturePropagation(
            s,
            blocks=config.propagation_blocks,
            window=config.alignment_window,
            deform_groups=config.deform_groups,
            offset_layers=config.offset_layers,
            lookahead=config.lookahead,
        )
        self.shot = ShotTest(config.shot_hidden)
        self.key_net = ResidualStack(g + config.basis + s, config.key_channels, config.key_blocks)
        self.attention = WindowAttention(
            g,
            config.key_channels,
            heads=config.heads,
            head_dim=config.head_dim,
            window=config.window,
            hyper_kernel=config.hyper_kernel,
            prior_options=dict(
                frequencies=config.hyper_frequencies,
                group_dim=config.hyper_group_dim,
                hidden=config.hyper_hidden,
                depth=config.hyper_depth,
            ),
            backend=config.backend,
        )
        self.temporal, self.fusion = None, None
        if config.neighbour_window:
            self.temporal = TemporalCandidates(
                s,
                heads=config.heads,
                side=config.neighbour_window,
                max_delta=max(config.temporal_reach, config.lookahead),
                hidden=config.temporal_hidden,
            )
            self.fusion = GuidanceFusion(g, hidden=config.fusion_hidden)

    def neighbour_deltas(self, mode: str) -> tuple[int, ...]:
        """The temporal offsets Δ of the neighbour windows `mode` reads (none without neighbour windows)."""
        if self.temporal is None:
            return ()
        return neighbour_deltas(mode, reach=self.config.temporal_reach, lookahead=self.config.lookahead)

    # -- inputs ----------------------------------------------------------------------------------
    @staticmethod
    def check_inputs(feats: Tensor, video: Tensor) -> tuple[Tensor, Tensor, bool]:
        """Checked `(B, T, C, h, w)` features and `(B, T, 3, H0, W0)` video, and whether they were images."""
        feats, feats_image = check_video(feats, "feats", channels=None, letters="h, w")
        video, video_image = check_video(video, "video", channels=3, letters="H, W", unit_range=True)
        if feats.shape[:2] != video.shape[:2]:
            raise ValueError(
                f"feats (B, T, C, h, w) = {tuple(feats.shape)} and video (B, T, 3, H, W) = {tuple(video.shape)} "
                "must have the same B and T"
            )
        if video.shape[-2] < feats.shape[-2] or video.shape[-1] < feats.shape[-1]:
            raise ValueError(
                f"video (B, T, 3, H, W) = {tuple(video.shape)} must be at least as large as the feature grid "
                f"(h, w) = {tuple(feats.shape[-2:])}: the guidance cannot be smaller than the features"
            )
        return feats, video, feats_image

    def flow_size(self, lr_size: tuple[int, int], video_size: tuple[int, int]) -> tuple[int, int]:
        """Where SPyNet runs: `flow_scale` × the LR grid, at most the video's size."""
        f = self.config.flow_scale
        return min(f * lr_size[0], video_size[0]), min(f * lr_size[1], video_size[1])

    # -- the parts of the method's steps ----------------------------------------------------------
    def describe(self, feats: Tensor, frames: Tensor, hr_size: tuple[int, int]) -> tuple[Tensor, Tensor, Tensor]:
        """Per-frame LR inputs of the keys and the propagation, and the HR guidance.

        Args:
            feats: `(N, C, h, w)`; frames: `(N, 3, H0, W0)`.
        Returns:
            descriptor `(N, M, h, w)`, pooled guidance `(N, Cg, h, w)`, HR guidance `(N, Cg, H, W)`.
        """
        descriptor = self.agnostic(l2_normalise(feats.to(self.agnostic.filters.dtype)), normalised=True)
        guidance = self.guidance(resize_guidance(frames, hr_size))  # (N, Cg, H, W)
        return descriptor, GuidanceEncoder.pool(guidance, tuple(feats.shape[-2:])), guidance

    def code(self, descriptor: Tensor, pooled: Tensor) -> Tensor:
        """Frame code for the propagation: `(N, M, h, w)`, `(N, Cg, h, w)` → `(N, S, h, w)`."""
        return self.encode_code(torch.cat([descriptor, pooled], dim=1))

    def flow(self, ref: Tensor, supp: Tensor) -> Tensor:
        """SPyNet flow ref → supp on flow-grid frames `(N, 3, fh, fw)` → `(N, 2, fh, fw)`."""
        dtype = self.spynet.mean.dtype
        return self.spynet(ref.to(dtype), supp.to(dtype))

    def keys(self, pooled: Tensor, descriptor: Tensor, state: Tensor) -> Tensor:
        """LR key features: `[pooled guidance ‖ descriptor ‖ state]` → `(N, key_channels, h, w)`."""
        return self.key_net(torch.cat([pooled, descriptor, state], dim=1))

    # -- the method -------------------------------------------------------------------------------
    def forward(
        self,
        feats: Tensor,
        video: Tensor,
        *,
        size: Sequence[int] | None = None,
        scale: float | Sequence[float] | None = None,
        mode: str | None = None,
        chunk_frames: int | None = None,
        query_tile: int | None = None,
        max_pixels: int = MAX_OUTPUT_PIXELS,
    ) -> Tensor:
        """Upsample a feature clip guided by its video.

        Args:
            feats: `(B, T, C, h, w)` features of any backbone, any C (or one image's `(B, C, h, w)`).
            video: `(B, T, 3, H0, W0)` RGB in [0, 1] with H0 ≥ h, W0 ≥ w (or `(B, 3, H0, W0)`).
            size: output `(H, W)`; scale: `a` or `(a, b)` relative to the feature grid. At most one;
                default: the video's size.
            mode: "bidirectional", "unidirectional", "lookahead" or "perframe" (default: the config's).
            chunk_frames: frames whose HR guidance is held at once (memory only; same result).
            query_tile: HR queries per attention chunk (memory only; same result).
            max_pixels: the most pixels `H·W` an output frame may have (`validation.check_output_size`).
        Returns:
            `(B, T, C, H, W)` in the dtype of `feats` (or `(B, C, H, W)` for an image).
        """
        feats, video, was_image, mode, hr_size = self._resolve(feats, video, size, scale, mode, max_pixels)
        chunk = feats.shape[1] if chunk_frames is None else check_positive_int(chunk_frames, "chunk_frames")
        if torch.is_grad_enabled():  # the frames are stacked at the end
            out = torch.cat([part for _, part in self._chunks(feats, video, mode, hr_size, chunk, query_tile)], dim=1)
        else:  # the frames are written into one preallocated output
            out = feats.new_empty(*feats.shape[:3], *hr_size)  # (B, T, C, H, W)
            for _ in self._chunks(feats, video, mode, hr_size, chunk, query_tile, out=out):
                pass
        return out[:, 0] if was_image else out

    def iter_chunks(
        self,
        feats: Tensor,
        video: Tensor,
        *,
        size: Sequence[int] | None = None,
        scale: float | Sequence[float] | None = None,
        mode: str | None = None,
        chunk_frames: int = 8,
        query_tile: int | None = None,
        max_pixels: int = MAX_OUTPUT_PIXELS,
    ) -> Iterator[tuple[int, Tensor]]:
        """The output of `forward`, one frame chunk at a time, so the whole HR clip is never held.

        Steps 1–2 (all on the LR grid) run once for the whole clip on the first `next()`; step 3 then runs per
        frame, and each chunk of `chunk_frames` frames is yielded as it is done. The chunks concatenated along T
        equal `forward(...)`. The inputs are checked when this is called.

        Args:
            feats, video, size, scale, mode, query_tile, max_pixels: as for `forward` (an image counts as T = 1).
            chunk_frames: frames per yielded chunk.
        Yields:
            `(t0, out)`: the first frame index and the `(B, n, C, H, W)` output of frames t0..t0+n−1, a
            fresh tensor for each chunk (n = chunk_frames, fewer in the last chunk).
        """
        feats, video, _, mode, hr_size = self._resolve(feats, video, size, scale, mode, max_pixels)
        chunk = check_positive_int(chunk_frames, "chunk_frames")
        if query_tile is not None:
            check_positive_int(query_tile, "query_tile")
        return self._chunks(feats, video, mode, hr_size, chunk, query_tile)

    def _resolve(
        self, feats, video, size, scale, mode, max_pixels=MAX_OUTPUT_PIXELS
    ) -> tuple[Tensor, Tensor, bool, str, tuple[int, int]]:
        """Checked `(B, T, C, h, w)` features, `(B, T, 3, H0, W0)` video, whether they were images, the mode
        and the output size `(H, W)`."""
        feats, video, was_image = self.check_inputs(feats, video)
        video = video.to(compute_dtype(self))  # float16 / float64 guidance: computed in the weights' dtype
        mode = self.check_mode(mode)
        h, w = feats.shape[-2:]
        video_size = (int(video.shape[-2]), int(video.shape[-1]))
        hr_size = video_size if size is None and scale is None else output_size(h, w, scale=scale, size=size)
        check_output_size(hr_size, (h, w), scale=scale, max_pixels=max_pixels)
        return feats, video, was_image, mode, hr_size

    def _chunks(
        self,
        feats: Tensor,
        video: Tensor,
        mode: str,
        hr_size: tuple[int, int],
        chunk: int,
        query_tile: int | None,
        out: Tensor | None = None,
    ) -> Iterator[tuple[int, Tensor]]:
        """The method on checked `(B, T, C, h, w)` features and `(B, T, 3, H0, W0)` video, a chunk of frames at a
        time: yields `(t0, (B, n, C, H, W))`, slices of `out` when it is given (no gradients), else fresh tensors
        (stacked from the frames when gradients are recorded)."""
        b, t, c = feats.shape[:3]
        clip = prepare_clip(self, feats, video, mode, hr_size, chunk=chunk)  # steps 1–2, on the LR grid
        source = ClipSource(self, clip, video, hr_size)
        plan = self.attention.plan(tuple(feats.shape[-2:]), hr_size, feats.device)  # runs, windows, prior
        record = torch.is_grad_enabled()
        for t0 in range(0, t, chunk):
            t1 = min(t, t0 + chunk)
            target = None
            if not record:
                target = out[:, t0:t1] if out is not None else feats.new_empty(b, t1 - t0, c, *hr_size)
            frames = []
            for i in range(t0, t1):  # step 3, frame by frame
                result = frame_step(
                    self, source, i, mode, plan, query_tile=query_tile, out=None if record else target[:, i - t0]
                )
                source.release_before(i)
                if record:
                    frames.append(result)
            yield t0, torch.stack(frames, dim=1) if record else target

    def stream(
        self, *, size=None, scale=None, mode: str | None = None, query_tile: int | None = None, compile: bool | str = False,
        max_pixels: int = MAX_OUTPUT_PIXELS,
    ):
        """An online upsampler ("unidirectional", "lookahead" or "perframe"): push frames, get outputs.

        `compile=True` (or a backend's name) runs each frame's step through `torch.compile` (see
        `VideoAnyUpStream`)."""
        from videoanyup.models.videoanyup_stream import VideoAnyUpStream

        return VideoAnyUpStream(self, size=size, scale=scale, mode=mode, query_tile=query_tile, compile=compile,
                                max_pixels=max_pixels)
