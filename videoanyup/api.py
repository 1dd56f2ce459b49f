"""The drop-in calls: `videoanyup.upsample(feats, video)` and its streaming twin (DESIGN.md §6).

```python
import videoanyup as vau
hr = vau.upsample(feats, video)                 # (B, T, C, h, w), (B, T, 3, H, W) -> (B, T, C, H, W)
hr = vau.upsample(feats, video, scale=(14, 14)) # relative to the feature grid; or size=(H, W)
stream = vau.upsample_stream(model=model, mode="unidirectional")
for f, frame in clip: outs = stream.push(f, frame)
```
`model=None` uses the bundled default weights (`videoanyup/weights/videoanyup/default/`), loaded once.
"""

from __future__ import annotations

import logging
from typing import Sequence

import torch
from torch import Tensor

from videoanyup.checkpoint import bundled_names
from videoanyup.models.videoanyup import KIND, VideoAnyUp
from videoanyup.validation import MAX_OUTPUT_PIXELS

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
    Returns:
        `(B, T, C, H', W')` (`(B, C, H', W')` for an image) in the dtype and on the device of `feats`.
    """
    model = _check_model(model)
    with torch.inference_mode():
        return model(
            feats, video, size=size, scale=scale, mode=mode, chunk_frames=chunk_frames, query_tile=query_tile,
            max_pixels=max_pixels,
        )


def upsample_stream(
    *,
    model: VideoAnyUp | None = None,
    size: Sequence[int] | None = None,
    scale: float | Sequence[float] | None = None,
    mode: str | None = None,
    query_tile: int | None = None,
    compile: bool | str = False,
    max_pixels: int = MAX_OUTPUT_PIXELS,
):
    """An online upsampler: `push(feats_t (B, C, h, w), frame_t (B, 3, H, W))` returns the outputs that are
    ready, `flush()` the rest (see `videoanyup.models.videoanyup_stream`). Default mode: the model's if it
    is causal, else the first causal mode its weights were trained for. `compile=True` (or a backend's
    name) runs each frame's steps through `torch.compile`."""
    return _check_model(model).stream(size=size, scale=scale, mode=mode, query_tile=query_tile, compile=compile,
                                      max_pixels=max_pixels)
