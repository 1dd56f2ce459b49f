"""VideoAnyUp: temporally consistent upsampling of the features of any backbone (DESIGN.md §5).

Per clip: per-pixel normalised features → the feature-agnostic descriptor; RGB guidance encoded at the
output grid (queries) and pooled to the LR grid (keys); SPyNet flows between guidance frames at a reduced
resolution; a hidden state propagated over the LR grid (bidirectional, unidirectional, look-ahead or per
frame); window attention from HR queries to LR keys whose head-averaged weights mix the raw LR features;
with `temporal_window` > 0, the same attention also reads a small window in each neighbouring frame,
centred where the flow carries the cell (spatio-temporal convex attention, `TemporalCandidates`);
optionally the queries' HR guidance fused with the guidance of frames t±1 warped to t (`GuidanceFusion`),
which may take a much sharper neighbour's guidance outright (the parameter-free sharpness prior);
optionally an occlusion-aware blend of the warped previous output. Every output vector is a convex
combination of input feature vectors (of several frames), so the output lives in the input's feature
space whatever C is.

`forward` returns the whole `(B, T, C, H, W)` output; `iter_chunks` runs the same steps but yields it one
frame chunk at a time (the LR-grid steps once for the clip, the HR attention per chunk), for clips whose
HR features do not fit in memory.
"""

from __future__ import annotations

import math
from typing import Iterator, Sequence

import torch
from einops import rearrange
from torch import Tensor

from videoanyup.functional.grid import output_size
from videoanyup.functional.warp import resize_flow
from videoanyup.layers.feature_agnostic import FeatureAgnosticLayer, l2_normalise
from videoanyup.layers.feature_propagation import MODES, FeaturePropagation
from videoanyup.layers.guidance_encoder import GuidanceEncoder, resize_guidance
from videoanyup.layers.guidance_fusion import GuidanceFusion
from videoanyup.layers.residual import ResidualStack
from videoanyup.layers.sharpness_prior import FINE_PIXELS, energy_window
from videoanyup.layers.spynet import SPyNet
from videoanyup.layers.temporal_blend import TemporalBlend
from videoanyup.layers.temporal_candidates import TemporalCandidates, neighbour_deltas
from videoanyup.layers.window_attention import WindowAttention
from videoanyup.models.clip_neighbours import clip_flows, fold, neighbour_plan
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
            window=config.attention_window,
            deform_groups=config.deform_groups,
            offset_layers=config.offset_layers,
            lookahead=config.lookahead,
        )
        self.key_net = ResidualStack(g + config.basis + s, config.key_channels, config.key_blocks)
        self.attention = WindowAttention(
            g,
            config.key_channels,
            heads=config.heads,
            head_dim=config.head_dim,
            window=config.window,
            prior=config.prior,
            prior_options=dict(
                frequencies=config.hyper_frequencies,
                group_dim=config.hyper_group_dim,
                hidden=config.hyper_hidden,
                depth=config.hyper_depth,
            ),
            backend=config.backend,
        )
        self.blend = (
            TemporalBlend(g, hidden=config.blend_channels, feature_cue=config.blend_feature_cue)
            if config.temporal_blend
            else None
        )
        self.temporal = (
            TemporalCandidates(
                s,
                heads=config.heads,
                side=config.temporal_window,
                max_delta=max(config.temporal_reach, config.lookahead),
                hidden=config.temporal_hidden,
                reads=config.temporal_reads,
                displacement_bias=config.temporal_displacement_bias,
                agreement_bias=config.temporal_agreement_bias,
            )
            if config.temporal_window
            else None
        )
        if config.temporal_sharpness_prior and not config.temporal_guidance:
            raise ValueError("temporal_sharpness_prior=True needs temporal_guidance=True (the prior adds to its fusion)")
        self.fusion = (
            GuidanceFusion(g, hidden=config.temporal_guidance_hidden, sharpness_prior=config.temporal_sharpness_prior)
            if config.temporal_guidance
            else None
        )

    def neighbour_deltas(self, mode: str) -> tuple[int, ...]:
        """The temporal offsets Δ of the neighbour windows `mode` reads (none without `temporal_window`)."""
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

    # -- the method's steps -----------------------------------------------------------------------
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

    def fine_size(self, hr_size: tuple[int, int], video_size: tuple[int, int]) -> tuple[int, int]:
        """Where the sharpness prior's SPyNet runs: the HR size, at most the video's and `FINE_PIXELS`."""
        fh, fw = min(hr_size[0], video_size[0]), min(hr_size[1], video_size[1])
        shrink = min(1.0, math.sqrt(FINE_PIXELS / (fh * fw)))
        return max(1, round(fh * shrink)), max(1, round(fw * shrink))

    def fine_flow(self, ref: Tensor, supp: Tensor, hr_size: tuple[int, int]) -> Tensor:
        """SPyNet flow ref → supp on video frames `(N, 3, H0, W0)` at `fine_size` → `(N, 2, H, W)` in HR pixels
        (the sharpness prior's alignment)."""
        fine = self.fine_size(hr_size, tuple(ref.shape[-2:]))
        return resize_flow(self.flow(resize_guidance(ref, fine), resize_guidance(supp, fine)), hr_size)

    def keys(self, pooled: Tensor, descriptor: Tensor, state: Tensor) -> Tensor:
        """LR key features: `[pooled guidance ‖ descriptor ‖ state]` → `(N, key_channels, h, w)`."""
        return self.key_net(torch.cat([pooled, descriptor, state], dim=1))

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
        if torch.is_grad_enabled():  # the chunks are stacked at the end
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

        Steps 1–2 (descriptors, flows, propagation, keys: all on the LR grid) run once for the whole clip
        on the first `next()`; step 3 then runs per chunk of `chunk_frames` frames. The optional temporal
        blend carries the previous chunk's last output across the boundary, and the optional guidance fusion
        the previous chunk's last guidance (and computes the next chunk's first), so the chunks concatenated
        along T equal `forward(...)`. The inputs are checked when this is called.

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
        """The method's steps on checked `(B, T, C, h, w)` features and `(B, T, 3, H0, W0)` video.

        Yields `(t0, (B, n, C, H, W))` per frame chunk: slices of `out` when it is given (no gradients),
        else fresh tensors (stacked from the clips' parts when gradients are recorded).
        """
        b, t, c, h, w = feats.shape
        video_size = (int(video.shape[-2]), int(video.shape[-1]))

        def unfold(x: Tensor) -> Tensor:
            return rearrange(x, "(b t) c h w -> b t c h w", b=b)

        # 1. LR descriptors and pooled guidance per frame chunk (the HR guidance is kept when one chunk
        #    holds the whole clip, and recomputed in step 3 otherwise).
        parts = [
            self.describe(fold(feats[:, t0 : t0 + chunk]), fold(video[:, t0 : t0 + chunk]), hr_size)
            for t0 in range(0, t, chunk)
        ]
        descriptor = torch.cat([unfold(d) for d, _, _ in parts], dim=1)  # (B, T, M, h, w)
        pooled = torch.cat([unfold(p) for _, p, _ in parts], dim=1)  # (B, T, Cg, h, w)
        kept = unfold(parts[0][2]) if len(parts) == 1 else None  # (B, T, Cg, H, W)
        del parts

        # 2. Flows between guidance frames, the state propagated over the LR grid, the keys.
        small = resize_guidance(fold(video), self.flow_size((h, w), video_size)).to(descriptor.dtype)
        flows = clip_flows(self, unfold(small), mode, (h, w))
        codes = unfold(self.code(fold(descriptor), fold(pooled)))  # (B, T, S, h, w)
        states = self.propagation(
            codes,
            mode=mode,
            flows_to_prev=flows["to_prev"],
            flows_to_next=flows["to_next"],
            lookahead_steps=flows["steps"],
        )
        keys = unfold(self.keys(fold(pooled), fold(descriptor), fold(states)))  # (B, T, key_channels, h, w)
        neighbours = neighbour_plan(self, mode, codes, flows, keys, pooled, descriptor)
        del descriptor, pooled, codes, states

        # 3. Window attention at the output grid per frame chunk, then the optional blend with the previous
        #    output (the last output and guidance of each clip carry over to the next chunk).
        record = torch.is_grad_enabled()
        plan = self.attention.plan((h, w), hr_size, feats.device)  # runs, windows and prior of this grid
        blend = self.blend is not None and mode != "perframe"
        fuse = self.fusion is not None and mode != "perframe"
        grid_flows = flows["prev_on_flow_grid"]  # (B, T − 1, 2, fh, fw) or None
        next_grid_flows = flows["next_on_flow_grid"] if fuse else None  # (B, T − 1, 2, fh, fw) or None
        previous: list[Tensor | None] = [None] * b  # (1, C, H, W) output of frame t0 − 1 per clip
        previous_guidance: list[Tensor | None] = [None] * b  # (1, Cg, H, W)
        for t0 in range(0, t, chunk):
            t1 = min(t, t0 + chunk)
            if record:
                target = None
            else:  # (B, t1 − t0, C, H, W)
                target = out[:, t0:t1] if out is not None else feats.new_empty(b, t1 - t0, c, *hr_size)
            clips = []
            for i in range(b):
                if kept is not None:
                    guidance = kept[i, t0:t1]  # (t1 − t0, Cg, H, W)
                else:
                    guidance = self._hr_guidance(video[i, t0:t1], hr_size)
                candidates = None
                if neighbours is not None:
                    table, frame, key_frame, centre, present, cell_bias = neighbours
                    candidates = self.temporal.candidates(
                        table[i], feats[i], frame[t0:t1], key_frame[t0:t1], centre[i, t0:t1],
                        self.neighbour_deltas(mode), present[t0:t1], None if cell_bias is None else cell_bias[i, t0:t1],
                    )
                queries = guidance
                if fuse and grid_flows is not None:
                    following = None  # frame t1's guidance, read by frame t1 − 1
                    if next_grid_flows is not None and t1 < t:
                        following = kept[i, t1 : t1 + 1] if kept is not None else self._hr_guidance(video[i, t1 : t1 + 1], hr_size)
                    queries = self.fusion.fuse_clip(
                        guidance, previous_guidance[i], following, grid_flows[i],
                        None if next_grid_flows is None else next_grid_flows[i], t0,
                        window=energy_window(hr_size, (h, w)),
                        fine_flow=lambda j, s, i=i: self.fine_flow(video[i, j : j + 1], video[i, s : s + 1], hr_size),
                    )
                result = self.attention(
                    queries, keys[i, t0:t1], feats[i, t0:t1], query_tile=query_tile,
                    out=None if record else target[i], plan=plan, neighbours=candidates,
                )  # (t1 − t0, C, H, W)
                if blend:
                    result = self.blend.blend_clip(
                        result, previous[i], guidance, previous_guidance[i],
                        None if grid_flows is None else grid_flows[i], t0,
                    )
                if blend:  # the caller may change a yielded chunk in place: a copy of what the next chunk reads
                    previous[i] = result[-1:] if record else result[-1:].clone()
                if blend or fuse:  # a copy: a view would hold the whole chunk's guidance
                    previous_guidance[i] = guidance[-1:] if record else guidance[-1:].clone()
                clips.append(result)
            yield t0, torch.stack(clips) if record else target  # (B, t1 − t0, C, H, W)

    def _hr_guidance(self, frames: Tensor, hr_size: tuple[int, int]) -> Tensor:
        """HR guidance `(n, Cg, H, W)` of video frames `(n, 3, H0, W0)`."""
        return self.guidance(resize_guidance(frames, hr_size))

    def stream(
        self, *, size=None, scale=None, mode: str | None = None, query_tile: int | None = None, compile: bool | str = False,
        max_pixels: int = MAX_OUTPUT_PIXELS,
    ):
        """An online upsampler ("unidirectional", "lookahead" or "perframe"): push frames, get outputs.

        `compile=True` (or a backend's name) runs each frame's steps through `torch.compile` (see
        `VideoAnyUpStream`)."""
        from videoanyup.models.videoanyup_stream import VideoAnyUpStream

        return VideoAnyUpStream(self, size=size, scale=scale, mode=mode, query_tile=query_tile, compile=compile,
                                max_pixels=max_pixels)
