"""Frame t's HR guidance completed from its neighbours' (DESIGN.md §5.5, optional `temporal_guidance`).

The queries of the window attention come from frame t's HR guidance alone. When frame t is blurred, its
guidance has no edges, every query looks like its neighbours, and the weights — over frame t's window and
the neighbour windows alike — spread out: the output falls towards bilinear however well the neighbour
values are aligned (on the held-out clips, σ 10 blur: clean queries for the blurred frame would recover
+0.03 in cosine, per frame and bidirectional alike). Frames t−1 and t+1 saw the same scene sharp. Their
guidance features, backward-warped to t with the flows t→t±1 (border padding), are fused into frame t's by
a per-pixel network:

    g'_t = g_t + a₋ ⊙ (ĝ₋ − g_t) + a₊ ⊙ (ĝ₊ − g_t) + b,
    (a₋, a₊, b) = s · MLP([g_t, ĝ₋, |ĝ₋ − g_t|, ĝ₊, |ĝ₊ − g_t|]),      ĝ± = warp(g_{t±1}, f_{t→t±1}),

whose last layer starts at zero, so `g'_t = g_t` before training (weights written without it load
unchanged); s = `OUTPUT_SCALE` lets Adam move the gates as fast as the rest. A neighbour that is absent
(the clip's ends; t+1 in unidirectional mode, which stays causal) enters as ĝ = g_t, so its term is zero.
Only the queries change: the values stay the raw LR features, and every output vector is still a convex
combination of them. The network is 1×1 convolutions (the guidance encoder has already given each pixel
its context), so it runs in row bands when no gradient is recorded and its memory stays that of a band,
whatever the output size.

With `sharpness_prior` the fused queries also take, where a neighbour is much sharper than frame t, that
neighbour's guidance aligned by fine flows (`videoanyup/layers/sharpness_prior.py`, no parameters).

Which neighbours each mode reads: bidirectional and look-ahead t−1 and t+1, unidirectional t−1, per frame
none (`GuidanceFusion.fuse_clip`, and the look-ahead stream, whose frame t+1 is pushed before t is out).
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn

from videoanyup.functional.warp import flow_warp, resize_flow
from videoanyup.layers.sharpness_prior import apply_sharpness_prior, edge_energy

FineFlow = Callable[[], Tensor]  # () → (N, 2, H, W) fine flow t → s in HR pixels

BAND_PIXELS = 1 << 16  # pixels per band when no gradient is recorded
OUTPUT_SCALE = 4.0  # the gates' scale (their last layer starts at zero)


class GuidanceFusion(nn.Module):
    """Per-pixel fusion of the warped guidance of frames t−1 and t+1 into frame t's.

    Args:
        channels: Cg of the guidance features.
        hidden: width of the fusion network.
        sharpness_prior: add the parameter-free sharpness prior (`sharpness_prior.py`) to the fused queries
            (in eval mode; see `prior_active`).
    """

    def __init__(self, channels: int, *, hidden: int = 32, sharpness_prior: bool = False) -> None:
        super().__init__()
        self.channels = channels
        self.sharpness_prior = sharpness_prior
        self.net = nn.Sequential(
            nn.Conv2d(5 * channels, hidden, 1),
            nn.LeakyReLU(0.1),
            nn.Conv2d(hidden, hidden, 1),
            nn.LeakyReLU(0.1),
            nn.Conv2d(hidden, 3 * channels, 1),  # (a₋, a₊, b), zero at the start
        )
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    @property
    def prior_active(self) -> bool:
        """The sharpness prior runs in eval mode only: it has nothing to learn, and training (train mode) sees
        the learned fusion alone, as the bundled weights were trained."""
        return self.sharpness_prior and not self.training

    def fuse(self, guidance: Tensor, before: Tensor, after: Tensor) -> Tensor:
        """`(N, Cg, h, w)` guidance of t and warped guidance of t−1, t+1 → `(N, Cg, h, w)` fused guidance."""
        to_before, to_after = before - guidance, after - guidance
        cues = torch.cat([guidance, before, to_before.abs(), after, to_after.abs()], dim=1)
        a_before, a_after, b = (OUTPUT_SCALE * self.net(cues)).chunk(3, dim=1)
        return guidance + a_before * to_before + a_after * to_after + b

    def forward(
        self,
        guidance: Tensor,
        previous: Tensor | None = None,
        to_previous: Tensor | None = None,
        following: Tensor | None = None,
        to_following: Tensor | None = None,
        *,
        window: int = 3,
        fine: tuple[FineFlow | None, FineFlow | None] = (None, None),
        energies: tuple[Tensor | None, Tensor | None, Tensor | None] | None = None,
    ) -> Tensor:
        """Fuse.

        Args:
            guidance: `(N, Cg, H, W)` HR guidance of frames t.
            previous, following: `(N, Cg, H, W)` raw (not fused) HR guidance of frames t − 1 and t + 1, or None
                where that neighbour is not read.
            to_previous, to_following: `(N, 2, H, W)` flows t → t−1 and t → t+1 in HR pixels (with their frames).
            window: the sharpness prior's energy window (`energy_window`); unused without the prior.
            fine: callables giving the fine flows t → t−1 and t → t+1 `(N, 2, H, W)` for the sharpness prior,
                called only where it takes from that neighbour (None: the grid flows above stand in).
            energies: the prior's `edge_energy` of frames t, t − 1 and t + 1 `(N, 1, H, W)` where known
                (None: computed).
        Returns:
            `(N, Cg, H, W)`; a new tensor (the inputs are not changed).
        """
        warped = []
        for name, other, flow in (("previous", previous, to_previous), ("following", following, to_following)):
            if other is None:
                warped.append(guidance)
                continue
            if other.shape != guidance.shape or flow is None or flow.shape[-3] != 2 or flow.shape[-2:] != guidance.shape[-2:]:
                raise ValueError(
                    f"guidance {tuple(guidance.shape)}, {name} {tuple(other.shape)} and its flow "
                    f"{None if flow is None else tuple(flow.shape)} must be (N, Cg, H, W), (N, Cg, H, W) and (N, 2, H, W)"
                )
            warped.append(flow_warp(other, flow.to(other.dtype), padding_mode="border"))  # (N, Cg, H, W)
        before, after = warped
        if torch.is_grad_enabled():
            out = self.fuse(guidance, before, after)
        else:
            out = torch.empty_like(guidance)
            rows = max(1, BAND_PIXELS // guidance.shape[-1])
            for r0 in range(0, guidance.shape[-2], rows):  # every pixel alone: the bands equal the whole
                band = slice(r0, r0 + rows)
                out[..., band, :] = self.fuse(guidance[..., band, :], before[..., band, :], after[..., band, :])
        if not self.prior_active:
            return out
        sides = []
        for other, flow, fine_flow in ((previous, to_previous, fine[0]), (following, to_following, fine[1])):
            if other is None:
                sides.append(None)
            else:
                sides.append((other, flow, fine_flow if fine_flow is not None else (lambda flow=flow: flow)))
        return apply_sharpness_prior(out, guidance, window, sides, None if energies is None else list(energies))

    def fuse_clip(
        self,
        guidance: Tensor,
        previous: Tensor | None,
        following: Tensor | None,
        to_prev: Tensor,
        to_next: Tensor | None,
        t0: int,
        *,
        window: int = 3,
        fine_flow: Callable[[int, int], Tensor] | None = None,
    ) -> Tensor:
        """The queries' guidance of frames `t0, t0+1, …` of one clip (a chunk of it), each fused with its
        neighbours': t−1, and t+1 where `to_next` is given.

        Args:
            guidance: `(n, Cg, H, W)` raw HR guidance of frames t0..t0+n−1.
            previous, following: `(1, Cg, H, W)` raw HR guidance of frames t0 − 1 and t0 + n (None: outside
                the clip, or not read).
            to_prev, to_next: `(T − 1, 2, fh, fw)` the clip's flows t→t−1 (from t = 1) and t→t+1 (to
                t = T − 2) on the flow grid (`to_next` None: t+1 is not read in this mode).
            window: the sharpness prior's energy window; fine_flow: `(j, s)` → the fine flow j → s `(1, 2, H, W)`
                between clip frames, for the sharpness prior (None: the grid flows stand in).
        Returns:
            `(n, Cg, H, W)`, a new tensor.
        """
        hr_size = tuple(guidance.shape[-2:])
        n, last = guidance.shape[0], to_prev.shape[0]  # last: the clip's last frame index, T − 1
        record = torch.is_grad_enabled()
        frames = [] if record else None
        out = None if record else torch.empty_like(guidance)
        energy = {}  # the prior's edge energy per frame of the chunk (k = −1, n: the frames around it), once each

        def energy_of(k: int, frame: Tensor | None) -> Tensor | None:
            if not self.prior_active or frame is None:
                return None
            if k not in energy:
                energy[k] = edge_energy(frame, window)
            return energy[k]

        for k in range(n):
            j = t0 + k
            before = (guidance[k - 1 : k] if k > 0 else previous) if j > 0 else None
            after = None
            if to_next is not None and j < last:
                after = guidance[k + 1 : k + 2] if k + 1 < n else following
            if before is None and after is None:
                fused = guidance[k : k + 1]
            else:
                fused = self(
                    guidance[k : k + 1],
                    before,
                    None if before is None else resize_flow(to_prev[j - 1 : j], hr_size),  # (1, 2, H, W), f_{j→j−1}
                    after,
                    None if after is None else resize_flow(to_next[j : j + 1], hr_size),  # f_{j→j+1}
                    window=window,
                    fine=(None, None) if fine_flow is None else (
                        lambda j=j: fine_flow(j, j - 1), lambda j=j: fine_flow(j, j + 1)
                    ),
                    energies=(energy_of(k, guidance[k : k + 1]), energy_of(k - 1, before), energy_of(k + 1, after)),
                )
                energy.pop(k - 1, None)  # read by no later frame
            if record:
                frames.append(fused)
            else:
                out[k] = fused[0]
        return torch.cat(frames) if record else out
