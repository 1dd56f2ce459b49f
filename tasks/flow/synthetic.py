"""Synthetic optical-flow pairs with exact ground truth, made from real still images.

A pair is built on a canvas larger than the crop by a `margin` on every side, so that moving content enters
the frame from real image content rather than from black borders:

1. background: a random crop of a real image (random zoom and flips), moved by a smooth random flow: a global
   affine motion (translation from sub-pixel up to `max_motion` pixels, log-uniform; rotation; zoom) plus a
   coarse random field upsampled bicubically (non-rigid motion);
2. occluding layers: up to `max_layers` foreground blobs cut from other images, each with its own motion,
   drawn on top of the background in both frames;
3. frames: `supp` is the centre crop of the layered canvas; `ref(p) = layer(p)` sampled at `p + flow(p)`,
   so that `flow_warp(supp, flow) ≈ ref` (the flow from ref to supp, DESIGN.md §3 and SPyNet's convention);
4. `valid` marks the pixels whose correspondence is visible: the supp pixels that `p + flow(p)` reads (all four
   bilinear neighbours) lie inside the frame and show the same layer as `p` does in ref — this excludes
   background occluded by a foreground layer in supp and pixels that leave the frame;
5. photometric noise (contrast, brightness, gamma, colour gains, Gaussian noise) is drawn for each frame
   independently;
6. low light (optional, a fraction `low_light` of the pairs): both frames are dimmed alike (a darkening gamma and
   an exposure factor) before the noise, so dark, low-contrast scenes — common in film and video, rare among
   well-exposed photos — are seen with their motion unchanged.

Every random number of pair `i` comes from a generator seeded by `(seed, i)`, so a pair is a pure function of
its index: training resumes exactly and workers need no coordination.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from videoanyup.functional.warp import base_grid

PURE = 1.0 - 1e-4  # a bilinear sample of a 0/1 map counts as "all neighbours set" above this


def pair_generator(seed: int, index: int) -> torch.Generator:
    """The generator of pair `index` for run `seed` (well-mixed, so nearby seeds give unrelated pairs)."""
    state = np.random.SeedSequence([int(seed), int(index)]).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 31 ^ int(state[1]))


def _uniform(g: torch.Generator, low: float, high: float, shape: Sequence[int] = ()) -> Tensor:
    return low + (high - low) * torch.rand(tuple(shape), generator=g)


def _log_uniform(g: torch.Generator, low: float, high: float) -> float:
    return math.exp(float(_uniform(g, math.log(low), math.log(high))))


class SyntheticFlowPairs(Dataset):
    """Pairs `(ref, supp)` with the flow from ref to supp, an occlusion-aware valid mask, deterministic per index.

    Args:
        images: `(3, H, W)` uint8 tensors (see `sources.load_images`); at least two.
        crop: side S of the square frames.
        length: number of pairs.
        seed: run seed; pair i depends only on (seed, i).
        max_motion: the largest displacement in pixels (background and layers alike).
        max_layers: at most this many occluding foreground layers per pair (0 turns occlusions off).
        photometric: apply the per-frame photometric noise (False gives the exactly aligned frames).
        large_motion: fraction of the motions (background and layers) whose translation is drawn uniformly in
            [max_motion / 4, max_motion] instead of log-uniformly in [0.1, max_motion] (which puts only
            ~11 % of them above half of max_motion). 0: no extra random draws.
        low_light: fraction of the pairs dimmed alike in both frames (exposure 0.25–0.7, gamma 1–1.8); needs
            `photometric`. 0 leaves every pair as it was without the option (no extra random draws).
    Items:
        dict with `ref`, `supp` (3, S, S) float32 in [0, 1]; `flow` (2, S, S) in pixels (x, y);
        `valid` (1, S, S) float32 in {0, 1}.
    """

    def __init__(
        self,
        images: Sequence[Tensor],
        *,
        crop: int = 320,
        length: int = 10_000,
        seed: int = 0,
        max_motion: float = 48.0,
        max_layers: int = 2,
        photometric: bool = True,
        low_light: float = 0.0,
        large_motion: float = 0.0,
    ) -> None:
        if len(images) < 2:
            raise ValueError(f"images must hold at least two images (the background and a layer), got {len(images)}")
        if any(im.dim() != 3 or im.shape[0] != 3 or im.dtype != torch.uint8 for im in images):
            raise ValueError("images must be (3, H, W) uint8 tensors")
        if crop < 8:
            raise ValueError(f"crop must be at least 8 pixels, got {crop}")
        if length < 1 or max_motion <= 0 or max_layers < 0:
            raise ValueError(
                f"length must be ≥ 1, max_motion > 0 and max_layers ≥ 0, got {length}, {max_motion}, {max_layers}"
            )
        for name, fraction in (("low_light", low_light), ("large_motion", large_motion)):
            if not 0.0 <= fraction <= 1.0:
                raise ValueError(f"{name} must be a fraction in [0, 1], got {fraction}")
        self.images = list(images)
        self.crop = crop
        self.length = length
        self.seed = seed
        self.max_motion = float(max_motion)
        self.max_layers = max_layers
        self.photometric = photometric
        self.low_light = float(low_light)
        self.large_motion = float(large_motion)
        self.margin = int(math.ceil(max_motion)) + 2
        self.canvas = crop + 2 * self.margin

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range for {self.length} pairs")
        g = pair_generator(self.seed, index)
        s, m = self.crop, self.margin
        n_layers = int(torch.randint(0, self.max_layers + 1, (), generator=g))
        picks = torch.randint(0, len(self.images), (n_layers + 1,), generator=g).tolist()

        textures = [self._random_canvas(self.images[i], g) for i in picks]  # each (3, Cv, Cv)
        masks = [torch.ones(1, self.canvas, self.canvas)]
        flows = [self._random_flow(g, centre=(s / 2, s / 2))]
        for _ in range(n_layers):
            mask, centre = self._random_blob(g)
            masks.append(mask)
            flows.append(self._random_flow(g, centre=centre))
        texture = torch.stack(textures)  # (K, 3, Cv, Cv)
        mask = torch.stack(masks)  # (K, 1, Cv, Cv)
        flow = torch.stack(flows)  # (K, 2, S, S)

        # supp: the top-most layer present at each canvas pixel
        visible = torch.zeros(self.canvas, self.canvas, dtype=torch.long)  # (Cv, Cv) layer index
        for k in range(1, len(masks)):
            visible[mask[k, 0] > 0.5] = k
        shown = F.one_hot(visible, len(masks)).permute(2, 0, 1).unsqueeze(1).float()  # (K, 1, Cv, Cv)
        supp_canvas = (texture * shown).sum(0)  # (3, Cv, Cv)
        supp = supp_canvas[:, m : m + s, m : m + s]

        # ref: every layer moved by its own flow; again the top-most present layer wins
        sampled = self._sample(torch.cat([texture, mask, shown], dim=1), flow)  # (K, 5, S, S)
        layer = torch.zeros(s, s, dtype=torch.long)  # (S, S)
        for k in range(1, len(masks)):
            layer[sampled[k, 3] > 0.5] = k
        pick = layer[None, None].expand(1, 5, s, s)
        chosen = sampled.gather(0, pick)[0]  # (5, S, S)
        ref = chosen[:3]
        gt = flow.gather(0, layer[None, None].expand(1, 2, s, s))[0]  # (2, S, S)

        target = base_grid(s, s, like=gt) + gt  # (2, S, S) position read in supp
        inside = ((target >= 0) & (target <= s - 1)).all(dim=0)
        same_layer = chosen[4] >= PURE
        valid = (inside & same_layer).float()[None]  # (1, S, S)

        if self.photometric:
            frames = torch.stack((ref, supp))
            if self.low_light > 0 and float(torch.rand((), generator=g)) < self.low_light:
                frames = self._dim(frames, g)
            ref, supp = self._photometric(frames, g).unbind(0)
        return {"ref": ref.contiguous(), "supp": supp.contiguous(), "flow": gt.contiguous(), "valid": valid}

    # -- parts ---------------------------------------------------------------------------------------------
    def _random_canvas(self, image: Tensor, g: torch.Generator) -> Tensor:
        """A random square crop of `image`, zoomed and flipped: `(3, H, W)` uint8 → `(3, Cv, Cv)` float."""
        size = self.canvas
        h, w = image.shape[-2:]
        low = max(0.5, size / min(h, w))
        zoom = float(_uniform(g, low, max(1.0, 1.25 * low)))
        side = min(h, w, max(2, int(round(size / zoom))))
        top = int(torch.randint(0, h - side + 1, (), generator=g))
        left = int(torch.randint(0, w - side + 1, (), generator=g))
        region = image[:, top : top + side, left : left + side].float().div(255.0)[None]  # (1, 3, side, side)
        region = F.interpolate(region, size=(size, size), mode="bilinear", align_corners=False, antialias=side > size)
        flips = [d for d, p in ((-1, 0.5), (-2, 0.2)) if float(torch.rand((), generator=g)) < p]
        region = region[0].clamp(0, 1)
        return region.flip(flips) if flips else region

    def _random_flow(self, g: torch.Generator, centre: tuple[float, float]) -> Tensor:
        """Affine motion about `centre` (x, y in frame pixels) plus a smooth random field: `(2, S, S)`."""
        s = self.crop
        magnitude = _log_uniform(g, 0.1, self.max_motion)
        if self.large_motion > 0 and float(torch.rand((), generator=g)) < self.large_motion:
            magnitude = float(_uniform(g, self.max_motion / 4, self.max_motion))
        angle = float(_uniform(g, 0.0, 2 * math.pi))
        translation = torch.tensor([magnitude * math.cos(angle), magnitude * math.sin(angle)])
        rotation = float(_uniform(g, -1.0, 1.0)) * math.radians(5.0) * float(torch.rand((), generator=g))
        zoom = math.exp(float(_uniform(g, -1.0, 1.0)) * 0.08 * float(torch.rand((), generator=g)))
        cos, sin = math.cos(rotation), math.sin(rotation)
        linear = torch.tensor([[zoom * cos - 1.0, -zoom * sin], [zoom * sin, zoom * cos - 1.0]])  # (2, 2)
        grid = base_grid(s, s, like=translation) - torch.tensor(centre).view(2, 1, 1)  # (2, S, S)
        flow = torch.einsum("ij,jhw->ihw", linear, grid) + translation.view(2, 1, 1)

        cells = int(torch.randint(2, 7, (), generator=g))
        amplitude = _log_uniform(g, 0.05, 2.0 + 0.15 * magnitude)
        field = torch.randn(1, 2, cells, cells, generator=g) * amplitude
        flow = flow + F.interpolate(field, size=(s, s), mode="bicubic", align_corners=False)[0]

        largest = float(flow.square().sum(0).max().sqrt())  # flow.norm(dim=0) is ~30× slower on CPU
        if largest > self.max_motion:
            flow = flow * (self.max_motion / largest)
        return flow

    def _random_blob(self, g: torch.Generator) -> tuple[Tensor, tuple[float, float]]:
        """A filled, wobbly ellipse on the canvas `(1, Cv, Cv)` and its centre in frame pixels (x, y)."""
        s, m, size = self.crop, self.margin, self.canvas
        cx, cy = (float(v) for v in _uniform(g, 0.0, float(s), (2,)))
        rx, ry = (float(v) for v in _uniform(g, 0.06 * s, 0.3 * s, (2,)))
        phi = float(_uniform(g, 0.0, math.pi))
        grid = base_grid(size, size, like=torch.zeros(())) - torch.tensor([cx + m, cy + m]).view(2, 1, 1)
        u = grid[0] * math.cos(phi) + grid[1] * math.sin(phi)
        v = -grid[0] * math.sin(phi) + grid[1] * math.cos(phi)
        distance = (u / rx) ** 2 + (v / ry) ** 2  # (Cv, Cv)
        wobble = F.interpolate(torch.randn(1, 1, 5, 5, generator=g), size=(size, size), mode="bicubic", align_corners=False)
        mask = (distance + 0.5 * wobble[0, 0] < 1.0).float()[None]  # (1, Cv, Cv)
        return mask, (cx, cy)

    def _sample(self, canvas: Tensor, flow: Tensor) -> Tensor:
        """Read `canvas` `(K, C, Cv, Cv)` at `p + margin + flow(p)` for the frame pixels p: `(K, C, S, S)`."""
        s, m, size = self.crop, self.margin, self.canvas
        position = base_grid(s, s, like=flow) + m + flow  # (K, 2, S, S) canvas pixels
        grid = ((2.0 * position + 1.0) / size - 1.0).permute(0, 2, 3, 1)  # (K, S, S, 2)
        return F.grid_sample(canvas, grid, mode="bilinear", padding_mode="zeros", align_corners=False)

    @staticmethod
    def _dim(frames: Tensor, g: torch.Generator) -> Tensor:
        """The same low-light rendering of both frames `(2, 3, S, S)`: a darkening gamma, then an exposure factor."""
        gamma = float(_uniform(g, 1.0, 1.8))
        exposure = _log_uniform(g, 0.25, 0.7)
        return frames.clamp(0, 1) ** gamma * exposure

    @staticmethod
    def _photometric(frames: Tensor, g: torch.Generator) -> Tensor:
        """Camera-like photometric noise on a pair `(2, 3, S, S)`: contrast, brightness, gamma and colour gains drawn
        once for both frames, then a small independent change per frame (brightness, gains, Gaussian noise), as
        between consecutive video frames (large independent changes drown the motion of low-contrast images)."""
        contrast = float(_uniform(g, 0.8, 1.2))
        brightness = float(_uniform(g, -0.08, 0.08))
        gamma = _log_uniform(g, 0.8, 1.25)
        gains = _uniform(g, 0.9, 1.1, (1, 3, 1, 1))
        flicker = _uniform(g, -0.015, 0.015, (2, 1, 1, 1))
        tint = _uniform(g, 0.985, 1.015, (2, 3, 1, 1))
        sigma = float(_uniform(g, 0.0, 0.012))
        x = ((frames - 0.5) * contrast + 0.5 + brightness + flicker).clamp(0, 1) ** gamma * gains * tint
        return (x + sigma * torch.randn(x.shape, generator=g)).clamp(0, 1)
