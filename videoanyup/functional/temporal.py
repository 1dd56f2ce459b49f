"""Frame indexing over time, and the flows from a frame to its neighbours."""

from __future__ import annotations

import torch
from torch import Tensor

from videoanyup.functional.warp import compose_flows


def mirrored_index(index: int, length: int) -> int:
    """Frame index with mirrored padding past the end of a clip of `length` frames (…, T−2, T−1, T−2, …).

    Clamped at 0, so a clip shorter than the padding repeats its first frame.
    """
    return index if index < length else max(0, 2 * (length - 1) - index)


def lookahead_window(t: int, k: int, length: int | None = None) -> list[int]:
    """Frames t, t+1, …, t+k of a clip of `length` frames, mirrored past its end (None: not known yet, no
    mirroring). The one definition of look-ahead padding, for both networks, their clips and their streams."""
    return [i if length is None else mirrored_index(i, length) for i in range(t, t + k + 1)]


def padded_indices(length: int, k: int) -> list[int]:
    """The frames of a clip of `length` frames followed by its k mirrored ones: `lookahead_window(0, length + k − 1)`."""
    return lookahead_window(0, length + k - 1, length)


def neighbour_flows(deltas: tuple[int, ...], to_prev: Tensor, to_next: Tensor | None) -> list[Tensor]:
    """Flows t → t + Δ `(B, T, 2, h, w)` per Δ, from the one-step flows `(B, T − 1, 2, h, w)`.

    f_{t→t−j} = compose(f_{t→t−j+1}, f_{t−j+1→t−j}), likewise forwards; zeros where t + Δ is outside the clip.
    """
    b, t = to_prev.shape[0], to_prev.shape[1] + 1
    zero = to_prev.new_zeros(b, 1, *to_prev.shape[2:])
    steps = {-1: torch.cat([zero, to_prev], dim=1), 1: None if to_next is None else torch.cat([to_next, zero], dim=1)}

    def shifted(x: Tensor, by: int) -> Tensor:  # y[:, t] = x[:, t + by], zeros outside
        y = torch.zeros_like(x)
        if abs(by) < t:
            if by >= 0:
                y[:, : t - by] = x[:, by:]
            else:
                y[:, -by:] = x[:, : t + by]
        return y

    result: dict[int, Tensor] = {}
    for sign in (-1, 1):
        reach = max([abs(d) for d in deltas if d * sign > 0], default=0)
        flow = steps[sign]
        for j in range(1, reach + 1):
            if j > 1:
                flow = compose_flows(flow, shifted(steps[sign], sign * (j - 1)))
            result[sign * j] = flow
    return [result[d] for d in deltas]
