"""Are two consecutive frames of the same shot? A learned test, so that a cut never leaks (DESIGN.md §5.5).

After a hard cut, frame t must take nothing from the other shot: not its features (the neighbour candidates),
not its guidance (the queries' fusion), not its propagated state. Per-cell biases cannot promise that (a few
cells of the other shot always look alike), so the decision is made once per pair of consecutive frames,
from robust statistics over the whole frame of the contrast-normalised cues (`frame_cues.pair_cues`):

    logit = MLP([mean, quartiles of |low_t − low_s|; mean sharpness change; change of log contrast; change of
                 brightness; the layout's change (`frame_cues`' thumbnails, no flow needed)]),
    p = sigmoid(logit).

The cues are computed on frames normalised by their own contrast, so a fade or an exposure change leaves the
low-band gap where it was (the backbone's features, and so the frame codes, change under a fade as much as across
a cut: they are not among the inputs), a blur keeps the low band, an occluder moves its quartiles little, and a cut
moves all of them.

A pair's p multiplies what crosses it: the aligned previous state of the recurrence, a neighbour's terms of
the guidance fusion, and (as log p added to the logits) every candidate of that neighbour; across several
steps the p's multiply (`chain`). The last layer starts at zero with a bias that makes `START_LOGIT`, so an
untrained test says "same shot" (p ≈ 0.998) and weights written before it give nearly the same output; its output
is multiplied by `OUTPUT_SCALE`, so that Adam moves the logit by several units within a short fine-tune. Training
supervises the logit on cuts (another sequence's frames before t) against every other pair, clean, degraded
or not (`tasks/upsampler/system.py`), and the task loss sees its effect on every frame.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from videoanyup.layers.frame_cues import PAIR_CUES

STATISTICS = 8
START_LOGIT = 5.0
OUTPUT_SCALE = 10.0
QUARTILES = (0.25, 0.5, 0.75)


def shot_statistics(cues: Tensor) -> Tensor:
    """`(N, STATISTICS)` from pair cues `(N, PAIR_CUES, h, w)`."""
    if cues.dim() != 4 or cues.shape[1] != PAIR_CUES:
        raise ValueError(f"cues must be (N, {PAIR_CUES}, h, w), got {tuple(cues.shape)}")
    gap = cues[:, 1].flatten(1).float()  # (N, h·w)
    quartiles = torch.quantile(gap, torch.tensor(QUARTILES, device=gap.device), dim=1).T  # (N, 3)
    frame_level = cues[:, 3:, 0, 0].float()  # (N, 5): mean sharpness change, mean gap, photometric change, layout
    return torch.cat([gap.mean(dim=1, keepdim=True), quartiles, frame_level[:, :1], frame_level[:, 2:]], dim=1)


class ShotTest(nn.Module):
    """Logit of "frames t and s are of the same shot", one per pair.

    Args:
        hidden: width of the MLP.
    """

    def __init__(self, hidden: int = 16) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(STATISTICS, hidden), nn.LeakyReLU(0.1), nn.Linear(hidden, 1))
        nn.init.zeros_(self.net[-1].weight)
        nn.init.constant_(self.net[-1].bias, START_LOGIT / OUTPUT_SCALE)

    def forward(self, cues: Tensor) -> Tensor:
        """`(N,)` logits from pair cues `(N, PAIR_CUES, h, w)`."""
        statistics = shot_statistics(cues).to(self.net[0].weight.dtype)
        return OUTPUT_SCALE * self.net(statistics)[:, 0]


def log_gate(logit: Tensor) -> Tensor:
    """log p of a pair from its logit (`(N,)`, ≤ 0)."""
    return F.logsigmoid(logit)


def chain(log_gates: list[Tensor]) -> Tensor:
    """log p across several consecutive pairs (the sum of theirs)."""
    total = log_gates[0]
    for g in log_gates[1:]:
        total = total + g
    return total
