"""A per-cell logit bias of each neighbour frame from how well frame t agrees with it (DESIGN.md §5.5).

Inside a grey box, or on a blurred frame, the HR query of frame t comes from the degraded pixels and so do
frame t's own keys: query and own keys still match, and the attention keeps reading the degraded frame
although its neighbours saw the content. Nothing in a single query–key product can tell that frame t is the
odd one out; a comparison across frames can. For every LR cell of frame t and every neighbour s = t + Δ this
module compares frame t's code with frame s's code read at the window centre of the cell:

    e_s(c) = [1 − cos(code_t(c), code_s(c + f_{t→s}(c))), mean |code_t − code_s(·)| over channels]

and gives a small convolutional head (3×3 then 1×1, per neighbour, shared by all Δ) the cue of that
neighbour, the mean cue over the neighbours present (high where frame t disagrees with every neighbour:
frame t is degraded there; high for one neighbour only: that neighbour is occluded there), |Δ|/2 and the
contrast-normalised pair cues of `frame_cues.py` (is the neighbour sharper here, is it the same content, did
the whole frame's brightness or contrast change): the codes disagree on a blurred frame and on a faded one
alike, and only those cues tell a degradation (lean on the neighbour) from a scene event (keep frame t's own).
Its output, one logit per head, is added to every candidate of neighbour s read by the queries of cell c. Adding
the same logit to all of a neighbour's candidates only moves weight between frames, so the output stays a
convex combination of the same candidates. The last layer is zero-initialised: an untrained bias is 0, so
weights trained without it load unchanged and give the same output.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from videoanyup.functional.warp import base_grid, flow_warp
from videoanyup.layers.frame_cues import PAIR_CUES

CUES = 2  # 1 − cosine and mean absolute difference of the codes
INPUTS = 2 * CUES + 1 + PAIR_CUES
# The head's output is multiplied by this: under Adam a parameter moves by about the learning rate per step
# whatever its gradient, so a zero-initialised head that is to move logits by several units within a short
# fine-tune needs its output scaled up (unscaled, 1150 steps at 1e-3 moved the bias by ~0.06 inside a grey box).
OUTPUT_SCALE = 8.0


def code_disagreement(code: Tensor, other: Tensor, centre: Tensor) -> Tensor:
    """`(N, 2, h, w)`: how frame t's code disagrees with a neighbour's code read at the window centres.

    Args:
        code: `(N, S, h, w)` frame t; other: `(N, S, h, w)` frame t + Δ;
        centre: `(N, 2, h, w)` (x, y) LR position in frame t + Δ of each cell's window centre.
    """
    h, w = code.shape[-2:]
    flow = centre - base_grid(h, w, like=centre)
    warped = flow_warp(other, flow, padding_mode="border").to(code.dtype)  # (N, S, h, w)
    cosine = F.cosine_similarity(code, warped, dim=1, eps=1e-6)  # (N, h, w)
    difference = (code - warped).abs().mean(dim=1)  # (N, h, w)
    return torch.stack([1.0 - cosine, difference], dim=1)


class AgreementBias(nn.Module):
    """Per-cell, per-head logit bias of each neighbour frame's candidates from the codes' (dis)agreement.

    Args:
        heads: attention heads (one logit each); hidden: width of the head.
    """

    def __init__(self, heads: int, hidden: int = 16) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(INPUTS, hidden, 3, padding=1), nn.LeakyReLU(0.1), nn.Conv2d(hidden, heads, 1)
        )
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(
        self, code: Tensor, others: Tensor, centres: Tensor, deltas: tuple[int, ...], present: Tensor, pair: Tensor
    ) -> Tensor:
        """The bias `(N, D, heads, h, w)`.

        Args:
            code: `(N, S, h, w)` code of frame t; others: `(N, D, S, h, w)` codes of the neighbours t + Δ;
            centres: `(N, D, 2, h, w)` their window centres; deltas: the D offsets Δ;
            present: `(N, D)` bool, the neighbour is in the clip, or a float weight in [0, 1] (its same-shot
                probability): each neighbour counts in the mean by it (absent ones, and those behind a cut, are left
                out; their candidates are masked by the caller);
            pair: `(N, D, PAIR_CUES, h, w)` the contrast-normalised cues of frame t against each neighbour.
        """
        n, d = others.shape[:2]
        h, w = code.shape[-2:]
        code = code.to(self.net[0].weight.dtype)
        cues = code_disagreement(
            code.repeat_interleave(d, dim=0), others.flatten(0, 1).to(code.dtype), centres.flatten(0, 1).to(code.dtype)
        ).view(n, d, CUES, h, w)
        weight = present.to(cues.dtype)[:, :, None, None, None]  # (N, D, 1, 1, 1)
        mean = (cues * weight).sum(dim=1, keepdim=True) / weight.sum(dim=1, keepdim=True).clamp_min(1.0)  # (N, 1, 2, h, w)
        distance = torch.tensor([abs(x) / 2 for x in deltas], dtype=cues.dtype, device=cues.device)
        inputs = torch.cat(
            [cues, mean.expand(n, d, CUES, h, w), distance.view(1, d, 1, 1, 1).expand(n, d, 1, h, w), pair.to(cues.dtype)],
            dim=2,
        )  # (N, D, INPUTS, h, w)
        return OUTPUT_SCALE * self.net(inputs.flatten(0, 1)).view(n, d, -1, h, w)
