"""The upsamplers the probes compare, by name.

* "bilinear": `F.interpolate` of the LR features (align_corners=False);
* "perframe": a VideoAnyUp model with `mode="perframe"` (no temporal propagation);
* "videoanyup": the same model in its own (trained / configured) mode;
* "bidirectional", "unidirectional", "lookahead": the same model in that mode.

Each is a function `(feats (T, C, h, w), frames (T, 3, H, W), geometry=None) -> (T, C, H, W)` run without
gradients. `geometry` (`backbone.geometry(H, W)`) places the cells where the backbone put them: bilinear
then interpolates between the true cell centres (`grid_geometry.sample_cells`), and the learned ones go
through `videoanyup.upsample(..., geometry=...)`. None or a tiling geometry: the cells tile the frames.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from videoanyup.api import upsample
from videoanyup.functional.grid_geometry import GridGeometry, sample_cells

MODE_UPSAMPLERS = ("bidirectional", "unidirectional", "lookahead")
UPSAMPLERS = ("bilinear", "perframe", "videoanyup", *MODE_UPSAMPLERS)
NEEDS_MODEL = ("perframe", "videoanyup", *MODE_UPSAMPLERS)

Upsampler = Callable[..., Tensor]  # (feats, frames, geometry=None) -> (T, C, H, W)


def parse_upsamplers(text: str) -> list[str]:
    """`"bilinear,videoanyup"` → names, checked (bilinear is always included: it is the reference)."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    bad = [n for n in names if n not in UPSAMPLERS]
    if bad or not names:
        raise ValueError(f"--upsampler takes a comma list of {', '.join(UPSAMPLERS)}, got {text!r}")
    if "bilinear" not in names:
        names.insert(0, "bilinear")
    return list(dict.fromkeys(names))


def make_upsampler(name: str, model=None, *, query_tile: int | None = None) -> Upsampler:
    """The upsampler `name` (module docstring); `model` is the VideoAnyUp for the two that need one."""
    if name == "bilinear":

        def bilinear(feats: Tensor, frames: Tensor, geometry: GridGeometry | None = None) -> Tensor:
            size = tuple(frames.shape[-2:])
            if geometry is not None and not geometry.is_tiling():
                return sample_cells(feats.float(), geometry.resized(size), size)
            return F.interpolate(feats.float(), size=size, mode="bilinear", align_corners=False)

        return bilinear
    if name not in NEEDS_MODEL:
        raise ValueError(f"upsampler must be one of {UPSAMPLERS}, got {name!r}")
    if model is None:
        raise ValueError(f"upsampler {name!r} needs a VideoAnyUp model")
    mode = None if name == "videoanyup" else name

    def learned(feats: Tensor, frames: Tensor, geometry: GridGeometry | None = None) -> Tensor:
        with torch.inference_mode():
            return upsample(feats[None], frames[None], model=model, mode=mode, query_tile=query_tile, geometry=geometry)[0]

    return learned
