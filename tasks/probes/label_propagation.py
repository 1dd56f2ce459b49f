"""Video object segmentation by label propagation through feature affinities (DESIGN.md §5.7).

For each frame t ≥ 1, every pixel takes the soft labels of its most similar context pixels: context =
the first frame (its given mask) and the 7 frames before t (their propagated soft masks); affinity
exp(cos/0.1) between L2-normalised features, restricted to context pixels within `radius` (a square
window, as in DINO's evaluation) and to the top-5 over all context frames, normalised to sum to one.

This runs on a reduced grid: `propagate_video` area-pools the upsampled features to 1/4 of the probe's
frame size (56 × 98 for a 224 × 392 frame) for every upsampler alike, then upsamples the soft masks
bilinearly to the annotation size. Affinities are computed by matrix products over query tiles of
`tile × tile` pixels against the `(tile + 2·radius)²` context pixels around them, so memory stays
small and no dense (h·w)² affinity is built.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor

TEMPERATURE = 0.1
TOP_K = 5
RADIUS = 12
PREVIOUS = 7
REDUCTION = 4


def propagate_labels(
    feats: Tensor,
    first: Tensor,
    *,
    temperature: float = TEMPERATURE,
    top_k: int = TOP_K,
    radius: int = RADIUS,
    previous: int = PREVIOUS,
    tile: int = 8,
) -> Tensor:
    """Propagate the first frame's soft labels through a clip on the features' own grid.

    Args:
        feats: `(T, C, h, w)` features (normalised inside).
        first: `(K, h, w)` soft labels of frame 0 (e.g. one-hot).
    Returns:
        `(T, K, h, w)` soft labels; frame 0 is `first`.
    """
    if feats.ndim != 4 or first.ndim != 3 or first.shape[-2:] != feats.shape[-2:]:
        raise ValueError(f"feats must be (T, C, h, w) and first (K, h, w) on the same grid, got {tuple(feats.shape)}, {tuple(first.shape)}")
    feats = F.normalize(feats.float(), dim=1)
    t_len, c, h, w = feats.shape
    k = first.shape[0]
    labels = [first.float()]
    r, s = radius, tile
    ph, pw = -(-h // s) * s, -(-w // s) * s  # query grid padded to whole tiles
    # 1 where a context pixel lies inside the image, on the context grid padded by r (and to whole tiles)
    inside = F.pad(torch.ones(1, h, w), (r, r + pw - w, r, r + ph - h))[0]  # (ph + 2r, pw + 2r)
    # the square window of each query pixel of a tile among the tile's context pixels
    qy, qx = torch.meshgrid(torch.arange(s), torch.arange(s), indexing="ij")
    cy, cx = torch.meshgrid(torch.arange(s + 2 * r), torch.arange(s + 2 * r), indexing="ij")
    near = ((qy.reshape(-1, 1) + r - cy.reshape(1, -1)).abs() <= r) & ((qx.reshape(-1, 1) + r - cx.reshape(1, -1)).abs() <= r)
    for t in range(1, t_len):
        context = [0] + list(range(max(1, t - previous), t))
        ctx_f = F.pad(feats[context], (r, r + pw - w, r, r + ph - h))  # (M, C, ph + 2r, pw + 2r)
        ctx_l = F.pad(torch.stack([labels[i] for i in context]), (r, r + pw - w, r, r + ph - h))  # (M, K, …)
        query = F.pad(feats[t], (0, pw - w, 0, ph - h))  # (C, ph, pw)
        out = torch.zeros(k, ph, pw)
        for y0 in range(0, ph, s):
            for x0 in range(0, pw, s):
                q = rearrange(query[:, y0 : y0 + s, x0 : x0 + s], "c y x -> (y x) c")  # (s², C)
                region = (slice(y0, y0 + s + 2 * r), slice(x0, x0 + s + 2 * r))
                cf = rearrange(ctx_f[:, :, region[0], region[1]], "m c y x -> c m (y x)")  # (C, M, n)
                cl = rearrange(ctx_l[:, :, region[0], region[1]], "m k y x -> m (y x) k")  # (M, n, K)
                allowed = near & (inside[region].reshape(1, -1) > 0)  # (s², n)
                sim = torch.einsum("qc,cmn->qmn", q, cf)  # (s², M, n)
                sim = sim.masked_fill(~allowed[:, None, :], float("-inf"))
                sim = rearrange(sim, "q m n -> q (m n)")
                values, index = sim.topk(min(top_k, sim.shape[1]), dim=1)  # (s², k')
                weights = torch.softmax(values / temperature, dim=1)  # exp(sim/τ) normalised over the top-k
                weights = torch.nan_to_num(weights)  # padded query pixels see no context
                gathered = rearrange(cl, "m n k -> (m n) k")[index]  # (s², k', K)
                soft = (weights[..., None] * gathered).sum(1)  # (s², K)
                out[:, y0 : y0 + s, x0 : x0 + s] = rearrange(soft, "(y x) k -> k y x", y=s)
        labels.append(out[:, :h, :w])
    return torch.stack(labels)


def reduced_size(size: tuple[int, int], reduction: int = REDUCTION) -> tuple[int, int]:
    """The propagation grid for a probe frame of `size`: each side divided by `reduction` (rounded, ≥ 1)."""
    return max(1, round(size[0] / reduction)), max(1, round(size[1] / reduction))


def propagate_video(
    feats: Tensor, first_labels: Tensor, classes: int, out_size: tuple[int, int], *, reduction: int = REDUCTION
) -> Tensor:
    """Label propagation of a clip of upsampled features, scored at the annotation size.

    Args:
        feats: `(T, C, H', W')` upsampled features at the probe's frame size.
        first_labels: `(H, W)` int64 label map of frame 0 at the annotation size.
        classes: K (background + object ids); out_size: `(H, W)`.
    Returns:
        `(T, H, W)` int64 label maps (argmax of the propagated soft labels; frame 0 is the given one).
    """
    grid = reduced_size(tuple(feats.shape[-2:]), reduction)
    small = F.interpolate(feats.float(), size=grid, mode="area")  # (T, C, h, w)
    one_hot = F.one_hot(first_labels.long(), classes).permute(2, 0, 1).float()[None]  # (1, K, H, W)
    first = F.interpolate(one_hot, size=grid, mode="area")[0]  # (K, h, w)
    soft = propagate_labels(small, first)  # (T, K, h, w)
    labels = F.interpolate(soft, size=out_size, mode="bilinear", align_corners=False).argmax(1)  # (T, H, W)
    labels[0] = first_labels
    return labels
