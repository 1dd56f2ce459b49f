"""The drop-in calls: `videoanyup.upsample(feats, video)` and its streaming twin (DESIGN.md §6).

```python
import videoanyup as vau
hr = vau.upsample(feats, video)                 # (B, T, C, h, w), (B, T, 3, H, W) -> (B, T, C, H, W)
hr = vau.upsample(feats, video, scale=(14, 14)) # relative to the feature grid; or size=(H, W)
hr = vau.upsample(feats, video, geometry=backbone.geometry(H, W))  # cells where the backbone put them
stream = vau.upsample_stream(model=model, mode="unidirectional")
for f, frame in clip: outs = stream.push(f, frame)
```
`model=None` uses the bundled default weights (`videoanyup/weights/videoanyup/default/`), loaded once.

`geometry` (a `GridGeometry`, e.g. from `backbone.geometry(H, W)`) says where the feature cells sit on
the video's frames. The network assumes they tile the frame, as a ViT's patches do; a CNN's cells are
centred on its receptive fields instead (ResNet's stride-16 cell i at 16·i + ½, not 16·i + 8). With a
geometry that is not a tiling, the guidance is resampled over the span the cells tile, the network
upsamples there, and its output is sampled back onto the video's pixel grid (`functional/grid_geometry.py`,
`CellAlignment`); a tiling geometry changes nothing.
"""

from __future__ import annotations

import logging
from typing import Sequence

import torch
from torch import Tensor

from videoanyup.checkpoint import bundled_names
from videoanyup.functional.grid import output_size
from videoanyup.functional.grid_geometry import CellAlignment, GridGeometry, check_geometry
from videoanyup.models.videoanyup import KIND, VideoAnyUp
from videoanyup.validation import MAX_OUTPUT_PIXELS, check_output_size

logger = logging.getLogger(__name__)

DEFAULT_WEIGHTS = "default"
_default_model: VideoAnyUp | None = None


def default_model() -> VideoAnyUp:
    """The bundled default VideoAnyUp (eval mode), loaded on first use."""
    global _default_model
    if _default_model is None:
        if DEFAULT_WEIGHTS not in bundled_names(KIND):
            raise RuntimeError(
                "videoanyup ships no trained default weights yet, so upsample(..., model=None) cannot run. "
                "Pass a model: upsample(feats, video, model=VideoAnyUp.from_pretrained(path)) for weights you "
                'trained, or model=VideoAnyUp.from_config("default") for an untrained network (tests, timing).'
            )
        logger.info("loading the bundled %s weights %r", KIND, DEFAULT_WEIGHTS)
        _default_model = VideoAnyUp.from_pretrained(DEFAULT_WEIGHTS).eval()
    return _default_model


def _check_model(model: object) -> VideoAnyUp:
    if model is None:
        return default_model()
    if not isinstance(model, VideoAnyUp):
        raise ValueError(f"model must be a VideoAnyUp (or None for the default weights), got {type(model).__name__}")
    return model


def upsample(
    feats: Tensor,
    video: Tensor,
    *,
    size: Sequence[int] | None = None,
    scale: float | Sequence[float] | None = None,
    model: VideoAnyUp | None = None,
    mode: str | None = None,
    chunk_frames: int | None = None,
    query_tile: int | None = None,
    max_pixels: int = MAX_OUTPUT_PIXELS,
    geometry: GridGeometry | None = None,
) -> Tensor:
    """Upsample backbone features guided by the video, without gradients.

    Args:
        feats: `(B, T, C, h, w)` features of any backbone and any C, or one image's `(B, C, h, w)`.
        video: `(B, T, 3, H, W)` RGB in [0, 1], or `(B, 3, H, W)`; at least as large as the feature grid.
        size: output `(H', W')`; scale: `a` or `(a, b)`, output `(round(a·h), round(b·w))`. At most one
            of them; default: the video's size.
        model: a `VideoAnyUp`; None for the bundled default weights.
        mode: "bidirectional", "unidirectional", "lookahead" or "perframe" (default: the model's).
        chunk_frames: frames whose HR guidance is held at once; query_tile: HR queries per attention
            chunk. Both bound memory and do not change the result.
        max_pixels: the most pixels `H'·W'` an output may have (default 7680×4320; `ValueError` above it).
        geometry: where the `(h, w)` cells sit on the video's frames (module docstring), on a frame of any
            size showing the same view (it is rescaled to the video's); None: they tile the frames.
    Returns:
        `(B, T, C, H', W')` (`(B, C, H', W')` for an image) in the dtype and on the device of `feats`.
    """
    model = _check_model(model)
    if geometry is not None:
        alignment = cell_alignment(feats, video, geometry, size=size, scale=scale, max_pixels=max_pixels)
    else:
        alignment = None
    with torch.inference_mode():
        if alignment is None or not alignment.needed:
            return model(
                feats, video, size=size, scale=scale, mode=mode, chunk_frames=chunk_frames, query_tile=query_tile,
                max_pixels=max_pixels,
            )
        out = model(
            feats, alignment.guidance(video), size=alignment.span_size, mode=mode, chunk_frames=chunk_frames,
            query_tile=query_tile, max_pixels=max_pixels,
        )  # (B, T, C, Hs, Ws) over the cells' span
        return alignment.restore(out)  # (B, T, C, H', W')


def cell_alignment(
    feats: Tensor,
    video: Tensor,
    geometry: GridGeometry,
    *,
    size: Sequence[int] | None = None,
    scale: float | Sequence[float] | None = None,
    max_pixels: int = MAX_OUTPUT_PIXELS,
) -> CellAlignment:
    """The `CellAlignment` of `geometry` for these inputs: the geometry rescaled to the video's frames and
    the output size that `size` / `scale` / the video's size give (as `upsample` resolves them), refused above `max_pixels`.

    Args:
        feats: `(..., C, h, w)`; video: `(..., 3, H0, W0)` (only the shapes are read).
    """
    if not isinstance(feats, Tensor) or feats.dim() < 3:
        raise ValueError(f"feats must be a (B, T, C, h, w) or (B, C, h, w) tensor, got {type(feats).__name__}")
    if not isinstance(video, Tensor) or video.dim() < 3:
        raise ValueError(f"video must be a (B, T, 3, H, W) or (B, 3, H, W) tensor, got {type(video).__name__}")
    h, w = int(feats.shape[-2]), int(feats.shape[-1])
    geometry = check_geometry(geometry, (h, w)).resized((int(video.shape[-2]), int(video.shape[-1])))
    if size is None and scale is None:
        out = geometry.frame
    else:
        out = output_size(h, w, scale=scale, size=size)
    check_output_size(out, (h, w), scale=scale, max_pixels=max_pixels)
    return CellAlignment.plan(geometry, out)


def upsample_stream(
    *,
    model: VideoAnyUp | None = None,
    size: Sequence[int] | None = None,
    scale: float | Sequence[float] | None = None,
    mode: str | None = None,
    query_tile: int | None = None,
    compile: bool | str = False,
    max_pixels: int = MAX_OUTPUT_PIXELS,
    geometry: GridGeometry | None = None,
):
    """An online upsampler: `push(feats_t (B, C, h, w), frame_t (B, 3, H, W))` returns the outputs that are
    ready, `flush()` the rest (see `videoanyup.models.videoanyup_stream`). Default mode: the model's if it
    is causal, else the first causal mode its weights were trained for. `compile=True` (or a backend's
    name) runs each frame's steps through `torch.compile`. `geometry`: where the cells sit, as for
    `upsample` (the stream then works over the cells' span and maps each output back)."""
    model = _check_model(model)
    if geometry is None:
        return model.stream(size=size, scale=scale, mode=mode, query_tile=query_tile, compile=compile, max_pixels=max_pixels)
    if not isinstance(geometry, GridGeometry):
        raise ValueError(f"geometry must be a GridGeometry (e.g. backbone.geometry(H, W)), got {type(geometry).__name__}")
    options = dict(mode=mode, query_tile=query_tile, compile=compile, max_pixels=max_pixels)
    return AlignedStream(model, geometry, size=size, scale=scale, options=options)


class AlignedStream:
    """A model's stream over the span of cells that do not tile the frame (`upsample_stream(geometry=...)`).

    The plan (`CellAlignment`) is made at the first push, from the features' grid and the frame's size; each
    pushed frame's guidance is resampled over the span, and each output `(B, C, Hs, Ws)` sampled back onto
    the frame, `(B, C, H', W')`. A tiling geometry passes frames and outputs through unchanged.
    """

    def __init__(self, model: VideoAnyUp, geometry: GridGeometry, *, size, scale, options: dict) -> None:
        self.model, self.geometry, self.size, self.scale, self.options = model, geometry, size, scale, options
        self.alignment: CellAlignment | None = None
        self.stream = None

    def _start(self, feats: Tensor, frame: Tensor) -> None:
        self.alignment = cell_alignment(
            feats, frame, self.geometry, size=self.size, scale=self.scale, max_pixels=self.options["max_pixels"]
        )
        if self.alignment.needed:
            self.stream = self.model.stream(size=self.alignment.span_size, **self.options)
        else:
            self.stream = self.model.stream(size=self.size, scale=self.scale, **self.options)

    def push(self, feats: Tensor, frame: Tensor) -> list[Tensor]:
        """As the model's stream's `push`; outputs on the frame's pixel grid."""
        if self.stream is None:
            self._start(feats, frame)
        if self.alignment.needed:
            frame = self.alignment.guidance(frame)  # (B, 3, Hg, Wg)
        return self._restore(self.stream.push(feats, frame))

    def flush(self) -> list[Tensor]:
        """As the model's stream's `flush`; outputs on the frame's pixel grid."""
        return [] if self.stream is None else self._restore(self.stream.flush())

    def _restore(self, outs: list[Tensor]) -> list[Tensor]:
        if not self.alignment.needed:
            return outs
        with torch.inference_mode():
            return [self.alignment.restore(out) for out in outs]
