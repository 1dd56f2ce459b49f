"""Where the cells of a feature grid sit on the frame, and how to upsample cells that do not tile it.

A backbone's feature grid `(h, w)` covers its input frame, but not always as the upsampler assumes. The
upsampler takes cell i of an axis to be the i-th of h equal tiles of the frame: centred at
`(i + ½)·H/h`. That holds for a ViT, whose patch i covers pixels `[p·i, p·i + p)`. A CNN's cell is centred
where its receptive field is: ResNet-50's stride-16 cell i at `16·i + ½`, half a cell before the tile centre
`16·i + 8`, because every strided convolution pads its input symmetrically.

`GridGeometry` states the truth per axis: cell i's centre sits at `offset + stride·i` pixels of a frame of
`frame` pixels, in continuous coordinates (pixel k spans `[k, k + 1)`, the frame `[0, H)`). The cells tile
the span `[offset − stride/2, offset − stride/2 + h·stride)`, which may stick out of the frame on one side
and fall short on the other.

`CellAlignment` upsamples such a grid with an upsampler that assumes tiling: the guidance is resampled
over the span (border pixels repeated outside the frame), the upsampler produces an output over the span,
and that output is sampled back, bilinearly, at the centres of the requested output pixels of the frame.
When the geometry is the tiling, every step is skipped and the upsampler runs as it would without it.

`sample_cells` is bilinear interpolation between the cells at their true centres: the geometry-aware
counterpart of `F.interpolate(..., mode="bilinear", align_corners=False)`, equal to it for a tiling.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

# Two geometries that differ by less than this fraction of a cell are the same
TILING_TOLERANCE = 1e-6

Span = tuple[float, float]  # (start, end) along one axis, in pixels of a frame


def _pair_of(values: Sequence, kind: type, name: str) -> tuple:
    if not isinstance(values, (tuple, list)) or len(values) != 2:
        raise ValueError(f"{name} must be a pair (y, x), got {values!r}")
    out = tuple(kind(v) for v in values)
    if kind is float and not all(math.isfinite(v) for v in out):
        raise ValueError(f"{name} must be finite, got {values!r}")
    return out


@dataclass(frozen=True)
class GridGeometry:
    """Cell `(i, j)` of an `(h, w)` grid is centred at `(offset[0] + stride[0]·i, offset[1] + stride[1]·j)`
    pixels of a frame of `frame = (H, W)` pixels (pixel k spans `[k, k + 1)`; module docstring).

    Attributes:
        grid: `(h, w)` cells; frame: `(H, W)` pixels; stride: pixels between cell centres (y, x);
        offset: the centre of cell 0 (y, x), in pixels.
    """

    grid: tuple[int, int]
    frame: tuple[int, int]
    stride: tuple[float, float]
    offset: tuple[float, float]

    def __post_init__(self) -> None:
        object.__setattr__(self, "grid", _pair_of(self.grid, int, "grid"))
        object.__setattr__(self, "frame", _pair_of(self.frame, int, "frame"))
        object.__setattr__(self, "stride", _pair_of(self.stride, float, "stride"))
        object.__setattr__(self, "offset", _pair_of(self.offset, float, "offset"))
        if min(self.grid) < 1 or min(self.frame) < 1 or min(self.stride) <= 0:
            raise ValueError(f"grid, frame and stride must be positive, got {self}")

    @classmethod
    def tiling(cls, grid: Sequence[int], frame: Sequence[int]) -> GridGeometry:
        """The geometry the upsampler assumes: h equal cells tile H pixels (a ViT's patches)."""
        stride = (frame[0] / grid[0], frame[1] / grid[1])
        return cls(grid=tuple(grid), frame=tuple(frame), stride=stride, offset=(stride[0] / 2, stride[1] / 2))

    def is_tiling(self, tolerance: float = TILING_TOLERANCE) -> bool:
        """Whether the cells tile the frame (stride H/h, offset stride/2), to `tolerance` of a cell."""
        tiling = GridGeometry.tiling(self.grid, self.frame)
        return all(
            abs(a - b) <= tolerance * s and abs(c - d) <= tolerance * s
            for a, b, c, d, s in zip(self.stride, tiling.stride, self.offset, tiling.offset, tiling.stride)
        )

    def resized(self, frame: Sequence[int]) -> GridGeometry:
        """The same cells on the frame resized to `frame = (H', W')` pixels (any resize that maps the frame's
        extent onto itself, as `F.interpolate(..., align_corners=False)` does)."""
        fy, fx = frame[0] / self.frame[0], frame[1] / self.frame[1]
        return GridGeometry(
            grid=self.grid,
            frame=tuple(frame),
            stride=(self.stride[0] * fy, self.stride[1] * fx),
            offset=(self.offset[0] * fy, self.offset[1] * fx),
        )

    def span(self) -> tuple[Span, Span]:
        """The region the cells tile, per axis `(start, end)` in pixels of the frame (module docstring)."""
        return tuple(
            (o - s / 2, o - s / 2 + n * s) for o, s, n in zip(self.offset, self.stride, self.grid)
        )  # type: ignore[return-value]

    def centres(self) -> tuple[Tensor, Tensor]:
        """The cell centres in pixels of the frame: `(h,)` and `(w,)` float64."""
        return tuple(
            o + s * torch.arange(n, dtype=torch.float64) for o, s, n in zip(self.offset, self.stride, self.grid)
        )  # type: ignore[return-value]

    def to_dict(self) -> dict:
        """A JSON-ready description (lists of numbers)."""
        return {"grid": list(self.grid), "frame": list(self.frame), "stride": list(self.stride), "offset": list(self.offset)}


def check_geometry(geometry: object, grid: Sequence[int], name: str = "geometry") -> GridGeometry:
    """`geometry` itself when it is a `GridGeometry` of `grid` cells; else ValueError naming `name`."""
    if not isinstance(geometry, GridGeometry):
        raise ValueError(f"{name} must be a GridGeometry (e.g. backbone.geometry(H, W)), got {type(geometry).__name__}")
    if tuple(geometry.grid) != tuple(int(g) for g in grid):
        raise ValueError(
            f"{name} describes a grid of {tuple(geometry.grid)} cells but the features have (h, w) = {tuple(grid)}"
        )
    return geometry


def _sample_axes(x: Tensor, ys: Tensor, xs: Tensor, source: tuple[Span, Span]) -> Tensor:
    """Bilinear samples of `x` (..., C, Hi, Wi), which covers `source` (per axis (start, end), any unit), at
    the positions `ys` (Ho,) and `xs` (Wo,) of that unit; border values repeat outside. Returns
    (..., C, Ho, Wo)."""
    lead = x.shape[:-3]
    x = x.reshape(-1, *x.shape[-3:])  # (N, C, Hi, Wi), N = prod(lead)
    (y0, y1), (x0, x1) = source
    gy = 2 * (ys - y0) / (y1 - y0) - 1  # grid_sample's normalised coordinate, align_corners=False
    gx = 2 * (xs - x0) / (x1 - x0) - 1
    grid_y, grid_x = torch.meshgrid(gy, gx, indexing="ij")  # (Ho, Wo)
    grid = torch.stack([grid_x, grid_y], dim=-1).to(device=x.device, dtype=x.dtype)  # (Ho, Wo, 2), (x, y) order
    grid = grid[None].expand(x.shape[0], -1, -1, -1)  # (N, Ho, Wo, 2)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)  # (N, C, Ho, Wo)
    return out.reshape(*lead, *out.shape[-3:])


def pixel_centres(length: float, count: int, start: float = 0.0) -> Tensor:
    """Centres of `count` equal pixels over `[start, start + length)`: `(count,)` float64."""
    return start + (torch.arange(count, dtype=torch.float64) + 0.5) * (length / count)


def sample_cells(feats: Tensor, geometry: GridGeometry, size: Sequence[int]) -> Tensor:
    """Bilinear interpolation between cells at their true centres, onto `size` pixels covering the frame.

    Args:
        feats: `(..., C, h, w)` with `(h, w) = geometry.grid` (any leading dims, e.g. `(B, T)`).
        size: `(H, W)` output pixels over the frame `[0, frame)`.
    Returns:
        `(..., C, H, W)`; beyond the outer cell centres the outer cells' values repeat. For a tiling geometry
        this equals `F.interpolate(feats, size, mode="bilinear", align_corners=False)`.
    """
    check_geometry(geometry, feats.shape[-2:])
    ys = pixel_centres(geometry.frame[0], int(size[0]))  # (H,) frame pixels
    xs = pixel_centres(geometry.frame[1], int(size[1]))
    (sy, sx), (oy, ox) = geometry.stride, geometry.offset
    h, w = geometry.grid
    # cell coordinates (cell i spans [i - 1/2, i + 1/2)) over a source spanning [-1/2, h - 1/2)
    return _sample_axes(feats, (ys - oy) / sy, (xs - ox) / sx, ((-0.5, h - 0.5), (-0.5, w - 0.5)))


def resample_to_span(x: Tensor, geometry: GridGeometry) -> Tensor:
    """A map over the frame resampled over the span its cells tile, at the map's own pixel pitch.

    Args:
        x: `(..., C, H, W)` covering `geometry.frame` (any pixel count).
    Returns:
        `(..., C, Hs, Ws)` over `geometry.span()`, `Hs = round(span length · H / frame height)` (at least h);
        area-pooling it to `geometry.grid` gives one value per cell, over that cell's own square.
    """
    frame = ((0.0, float(geometry.frame[0])), (0.0, float(geometry.frame[1])))
    centres = []
    for (start, end), n, pixels, length in zip(geometry.span(), geometry.grid, x.shape[-2:], geometry.frame):
        count = max(n, round((end - start) * pixels / length))
        centres.append(pixel_centres(end - start, count, start))
    return _sample_axes(x, centres[0], centres[1], frame)


@dataclass(frozen=True)
class CellAlignment:
    """How to run a tiling upsampler on cells that sit where `geometry` says (module docstring).

    Attributes:
        geometry: the cells, on the guidance video's frame (`frame` = the video's `(H0, W0)`).
        size: the requested output `(H, W)`, covering the frame.
        guidance_size: `(Hg, Wg)` pixels of guidance resampled over the span (the video's pixel pitch).
        span_size: `(Hs, Ws)` output pixels over the span (the requested pitch, rounded up), what the
            upsampler is asked for.
    """

    geometry: GridGeometry
    size: tuple[int, int]
    guidance_size: tuple[int, int]
    span_size: tuple[int, int]

    @classmethod
    def plan(cls, geometry: GridGeometry, size: Sequence[int]) -> CellAlignment:
        """The plan for an output of `size = (H, W)` over `geometry.frame`."""
        spans = geometry.span()
        lengths = [end - start for start, end in spans]
        guidance = tuple(max(n, round(length)) for n, length in zip(geometry.grid, lengths))
        span_size = tuple(
            max(n, math.ceil(length * out / frame - 1e-9))
            for n, length, out, frame in zip(geometry.grid, lengths, size, geometry.frame)
        )
        return cls(geometry=geometry, size=(int(size[0]), int(size[1])), guidance_size=guidance, span_size=span_size)

    @property
    def needed(self) -> bool:
        """False when the geometry is the tiling: the upsampler can run on the inputs as they are."""
        return not self.geometry.is_tiling()

    def guidance(self, frames: Tensor) -> Tensor:
        """The guidance over the span: `(..., 3, H0, W0)` frames → `(..., 3, Hg, Wg)` (border pixels repeat)."""
        if tuple(frames.shape[-2:]) != self.geometry.frame:
            raise ValueError(f"frames must be {self.geometry.frame} pixels as planned, got {tuple(frames.shape[-2:])}")
        (y0, y1), (x0, x1) = self.geometry.span()
        ys = pixel_centres(y1 - y0, self.guidance_size[0], y0)
        xs = pixel_centres(x1 - x0, self.guidance_size[1], x0)
        frame = ((0.0, float(self.geometry.frame[0])), (0.0, float(self.geometry.frame[1])))
        return _sample_axes(frames, ys, xs, frame)

    def restore(self, out: Tensor) -> Tensor:
        """The upsampler's output over the span back onto the frame: `(..., C, Hs, Ws)` → `(..., C, H, W)`."""
        if tuple(out.shape[-2:]) != self.span_size:
            raise ValueError(f"out must be {self.span_size} pixels over the span as planned, got {tuple(out.shape[-2:])}")
        ys = pixel_centres(self.geometry.frame[0], self.size[0])
        xs = pixel_centres(self.geometry.frame[1], self.size[1])
        return _sample_axes(out, ys, xs, self.geometry.span())


__all__ = ["CellAlignment", "GridGeometry", "check_geometry", "pixel_centres", "resample_to_span", "sample_cells"]
