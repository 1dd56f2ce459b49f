"""PCA colourings of LR and upsampled features: a PNG grid and a short mp4.

Three principal components are fitted on the LR features of the first frame and applied to every
upsampler's features, each component mapped to a colour channel with the LR projection's 1st–99th
percentiles as its range, so the columns are directly comparable. Rows are frames; columns are the
RGB frame, the LR features (nearest-neighbour enlarged) and each upsampler.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor


class PCAColouring:
    """3-component PCA of `(C, h, w)` LR features, mapping any `(T, C, H, W)` maps to `(T, 3, H, W)` RGB."""

    def __init__(self, lr_first: Tensor) -> None:
        x = rearrange(lr_first.float(), "c h w -> (h w) c")
        self.mean = x.mean(0)
        _, _, v = torch.linalg.svd(x - self.mean, full_matrices=False)
        self.components = v[:3].T  # (C, 3)
        projected = (x - self.mean) @ self.components  # (h·w, 3)
        self.low = torch.quantile(projected, 0.01, dim=0)
        self.high = torch.quantile(projected, 0.99, dim=0)

    def __call__(self, maps: Tensor) -> Tensor:
        """`(T, C, H, W)` → `(T, 3, H, W)` in [0, 1]."""
        t, _, h, w = maps.shape
        x = rearrange(maps.float(), "t c h w -> (t h w) c")
        rgb = ((x - self.mean) @ self.components - self.low) / (self.high - self.low).clamp_min(1e-6)
        return rearrange(rgb.clamp(0, 1), "(t h w) k -> t k h w", t=t, h=h, w=w)


def enlarge(lr_rgb: Tensor, size: tuple[int, int]) -> Tensor:
    """Nearest-neighbour enlargement of `(T, 3, h, w)` to `size`, so LR cells stay visible."""
    return F.interpolate(lr_rgb, size=size, mode="nearest")


def write_figures(folder: str | Path, name: str, columns: dict[str, Tensor], *, rows: int = 4, fps: float = 4) -> list[Path]:
    """Write `name_pca.png` (a grid of `rows` frames) and `name_pca.mp4` (every frame) into `folder`, the
    temporary folder of an `output_guard.output_folder` (the probe's `--figures`).

    Args:
        columns: title → `(T, 3, H, W)` in [0, 1], all the same size (the first is usually the RGB frame).
    Returns:
        the written paths.
    """
    from PIL import Image, ImageDraw

    from videoanyup.tasks.video_io import VideoWriter, to_uint8

    folder = Path(folder)
    strips = torch.cat(list(columns.values()), dim=-1)  # (T, 3, H, n·W)
    t_len = strips.shape[0]
    picks = np.unique(np.linspace(0, t_len - 1, min(rows, t_len)).round().astype(int))
    header = 16
    grid = to_uint8(torch.cat([strips[i] for i in picks], dim=-2))  # (rows·H, n·W, 3)
    canvas = Image.new("RGB", (grid.shape[1], grid.shape[0] + header), "white")
    canvas.paste(Image.fromarray(grid), (0, header))
    draw = ImageDraw.Draw(canvas)
    width = next(iter(columns.values())).shape[-1]
    for i, title in enumerate(columns):
        draw.text((i * width + 4, 2), title, fill="black")
    png = folder / f"{name}_pca.png"
    canvas.save(png)
    mp4 = folder / f"{name}_pca.mp4"
    with VideoWriter(mp4, fps=fps, crf=18, preset="fast") as writer:
        for frame in to_uint8(strips):
            writer.write(np.ascontiguousarray(frame))
    return [png, mp4]
