"""Where frame t's guidance is much flatter than its aligned neighbours', take theirs (`temporal_sharpness_prior`).

A blurred frame's HR guidance has no edges, so its queries cannot place anything: the attention's weights
spread and the output falls towards bilinear, however well the neighbour values are aligned. The learned
`GuidanceFusion` sees one pixel at a time (1×1 convolutions), so it cannot tell a blurred frame from a flat
region, and its gates stay near zero. This prior needs no training. It compares local edge energy, the way
burst deblurring weighs frames by their sharpness (Delbracio & Sapiro, "Burst deblurring", CVPR 2015, weigh
each frame's Fourier magnitudes; here the measure is spatial, per pixel):

    E(g)(x)   = mean over a w × w window around x of Σ_c (|∂x g_c| + |∂y g_c|)      (edge energy of guidance g)
    ρ_s(x)    = log(Ê_s(x) / E_t(x)) / log r,      Ê_s = warp(E(g_s), f_{t→s})            (s = t ± 1)
    π_s(x)    = clamp(ρ_s(x) − 1, 0, 1),          then π ← π / max(1, Σ_s π_s)
    g'_t      = g_t + Σ_s π_s ⊙ (ĝ_s − g_t),      ĝ_s = warp(g_s, f⁺_{t→s})

so a neighbour counts only where it has more than r times frame t's edge energy, and replaces frame t's guidance
outright where it has r² times as much (r = `RATIO`, 2). On a clean clip consecutive frames have about the same
energy, π = 0, and the queries are exactly frame t's. The window w is two LR cells (odd, in HR pixels).

Alignment decides what the replaced guidance is worth: warped with the flow grid's flows (4 × the LR grid), a
neighbour's guidance is a few HR pixels off at every edge and loses most of its value (on training clips,
σ 10 blur on frame t: +0.011 in cosine bidirectional with grid flows, +0.026 with flows at the guidance's
size). So the warp that fills π > 0 uses flows f⁺ computed by SPyNet on the frames at the HR size (at most
`FINE_PIXELS`), and only where π > 0 covers at least `FINE_AREA` of the frame; smaller patches (real clean clips
have a few: a neighbour sharper where frame t has motion blur or at an occlusion) are placed by the grid flows,
and a frame with π = 0 everywhere costs the energies alone.

The constants were chosen on the DAVIS training sequences (random DINOv2-S seed 1, σ 10 blur or a grey box on
frame 4 of 8), never on the held-out ones: r = 2 and 3 and windows of one and two cells gave the same blur gains
on four of them (+0.058 … +0.059 bidirectional); on all six, two cells left the clean frames' π > 0 on the least area (mean 0.6 %, at most
2.6 % of a frame, none on 17 of 84 frame pairs), so `FINE_AREA` = 1/32 keeps every clean pair seen on the grid
flows while a 40 % box (16 % of the frame) and a blurred frame get the fine ones.

Only the queries change: the values stay the raw LR features and every output is still a convex combination
of them. It runs in eval mode only (`GuidanceFusion.prior_active`): it has nothing to learn, and training sees
the learned fusion alone, as the bundled weights were trained.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from videoanyup.functional.warp import flow_warp

RATIO = 2.0  # a neighbour starts to count at RATIO × frame t's edge energy, replaces it at RATIO²
FINE_PIXELS = 1 << 18  # SPyNet's fine flows run at the HR size, at most this many pixels
FINE_AREA = 1 / 32  # fine flows only for a neighbour whose π > 0 covers at least this share of the frame
WINDOW_CELLS = 2  # the energy's window, in LR cells
BAND_PIXELS = 1 << 16  # rows per band of the energy when no gradient is recorded


def energy_window(hr_size: tuple[int, int], lr_size: tuple[int, int]) -> int:
    """The energy's window: `WINDOW_CELLS` LR cells in HR pixels, odd, at least 3."""
    cell = 0.5 * (hr_size[0] / lr_size[0] + hr_size[1] / lr_size[1])
    return max(3, 2 * round(WINDOW_CELLS * cell / 2) + 1)


def edge_energy(guidance: Tensor, window: int) -> Tensor:
    """`(N, Cg, H, W)` → `(N, 1, H, W)`: Σ_c |∂x g| + |∂y g| (forward differences, 0 past the last row and
    column), averaged over a `window` × `window` box (replicated border)."""
    if torch.is_grad_enabled() or guidance.shape[-2] * guidance.shape[-1] <= BAND_PIXELS:
        raw = _gradient_magnitude(guidance)
    else:  # in row bands, each with the next row: the memory of a band, not of Cg maps
        h = guidance.shape[-2]
        rows = max(1, BAND_PIXELS // guidance.shape[-1])
        raw = guidance.new_empty(guidance.shape[0], 1, *guidance.shape[-2:])
        for r0 in range(0, h, rows):
            r1 = min(h, r0 + rows)
            raw[..., r0:r1, :] = _gradient_magnitude(guidance[..., r0 : min(h, r1 + 1), :])[..., : r1 - r0, :]
    half = window // 2  # the box filter as two 1-D passes: 2w instead of w² reads a pixel
    down = F.avg_pool2d(F.pad(raw, (0, 0, half, half), mode="replicate"), (window, 1), stride=1)
    return F.avg_pool2d(F.pad(down, (half, half, 0, 0), mode="replicate"), (1, window), stride=1)


def _gradient_magnitude(g: Tensor) -> Tensor:
    """`(N, Cg, H, W)` → `(N, 1, H, W)`: Σ_c |g[x+1] − g[x]| + |g[y+1] − g[y]| (0 past the edge)."""
    dx = (g[..., :, 1:] - g[..., :, :-1]).abs().sum(1, keepdim=True)
    dy = (g[..., 1:, :] - g[..., :-1, :]).abs().sum(1, keepdim=True)
    return F.pad(dx, (0, 1, 0, 0)) + F.pad(dy, (0, 0, 0, 1))


def sharper_weights(energy: Tensor, warped: list[Tensor | None], ratio: float = RATIO) -> list[Tensor | None]:
    """π_s per neighbour (`(N, 1, H, W)`, None where the neighbour is absent): 0 where its warped energy is at
    most `ratio` × frame t's, 1 at `ratio`² ×, log-linear between; scaled so that Σ_s π_s ≤ 1."""
    tiny = torch.finfo(energy.dtype).tiny
    log_t = torch.log(energy.clamp_min(tiny))
    weights = [
        None if e is None else ((torch.log(e.clamp_min(tiny)) - log_t) / math.log(ratio) - 1).clamp(0, 1)
        for e in warped
    ]
    present = [w for w in weights if w is not None]
    if len(present) > 1:
        total = torch.stack(present).sum(0).clamp_min(1)
        weights = [None if w is None else w / total for w in weights]
    return weights


def apply_sharpness_prior(
    fused: Tensor,
    guidance: Tensor,
    window: int,
    neighbours: list[tuple[Tensor, Tensor, Callable[[], Tensor]] | None],
    energies: list[Tensor | None] | None = None,
) -> Tensor:
    """Add Σ_s π_s ⊙ (ĝ_s − g_t) to the (learned) fused queries.

    Args:
        fused: `(N, Cg, H, W)` the queries so far (`GuidanceFusion`'s output, or `guidance`).
        guidance: `(N, Cg, H, W)` raw HR guidance of frame t.
        window: the energy's window (`energy_window`).
        neighbours: per neighbour s (None: absent) its raw guidance `(N, Cg, H, W)`, the grid flow t→s resized
            to HR `(N, 2, H, W)` (which places its energy, and its guidance where π_s > 0 covers less than
            `FINE_AREA` of the frame) and a callable giving the fine flow t→s `(N, 2, H, W)` in HR pixels, called
            only where π_s > 0 covers at least `FINE_AREA` (of any of the N frames).
        energies: `edge_energy` of frame t's guidance and of each neighbour's `(N, 1, H, W)`, where the caller
            has them already (None entries, or None: computed here).
    Returns:
        `(N, Cg, H, W)`: `fused` itself when every π is zero, else a new tensor.
    """
    energies = energies if energies is not None else [None] * (1 + len(neighbours))
    energy = energies[0] if energies[0] is not None else edge_energy(guidance, window)
    warped = []
    for n, e in zip(neighbours, energies[1:]):
        if n is None:
            warped.append(None)
            continue
        e = e if e is not None else edge_energy(n[0], window)
        warped.append(flow_warp(e, n[1].to(guidance.dtype), padding_mode="border"))
    weights = sharper_weights(energy, warped)
    out = fused
    for n, weight in zip(neighbours, weights):
        if n is None:
            continue
        area = float((weight > 0).flatten(1).float().mean(1).amax())  # the largest share of a frame with π > 0
        if area == 0:
            continue
        flow = n[2]() if area >= FINE_AREA else n[1]
        aligned = flow_warp(n[0], flow.to(guidance.dtype), padding_mode="border")  # (N, Cg, H, W)
        out = out + weight * (aligned - guidance)
    return out
