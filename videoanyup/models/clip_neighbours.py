"""What a clip's frames read of each other (DESIGN.md §5.5): the flows a propagation mode needs, and where each
frame's neighbour windows sit in the other frames (`TemporalCandidates`). Both run once per clip, on the LR
grid (the flows on the flow grid), before the HR attention; `VideoAnyUp._chunks` calls them with itself as
`model`.
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import Tensor

from videoanyup.functional.temporal import mirrored_index, neighbour_flows
from videoanyup.functional.warp import resize_flow


def fold(x: Tensor) -> Tensor:
    """`(B, T, ·, h, w)` → `(B·T, ·, h, w)`."""
    return rearrange(x, "b t c h w -> (b t) c h w")


def clip_flows(model, small: Tensor, mode: str, lr_size: tuple[int, int]) -> dict[str, Tensor | None]:
    """LR flows a mode needs from flow-grid frames `(B, T, 3, fh, fw)`; each `(B, T', 2, h, w)`.

    Also returns "prev_on_flow_grid" and "next_on_flow_grid": the flows t→t−1 (t ≥ 1) and t→t+1
    (t ≤ T − 2; bidirectional and look-ahead) on the flow grid, which the blend and the guidance fusion
    resize to HR.
    """
    b, t = small.shape[:2]

    def run(ref_index: list[int], supp_index: list[int]) -> Tensor:
        flow = model.flow(fold(small[:, ref_index]), fold(small[:, supp_index]))
        return rearrange(flow, "(b t) c h w -> b t c h w", b=b)  # (B, T', 2, fh, fw)

    def to_lr(flow: Tensor) -> Tensor:
        return rearrange(resize_flow(fold(flow), lr_size), "(b t) c h w -> b t c h w", b=b)

    result: dict[str, Tensor | None] = dict.fromkeys(
        ("to_prev", "to_next", "steps", "prev_on_flow_grid", "next_on_flow_grid")
    )
    if mode == "perframe":
        return result
    if t > 1:
        result["prev_on_flow_grid"] = run(list(range(1, t)), list(range(t - 1)))  # f_{t→t−1}
        result["to_prev"] = to_lr(result["prev_on_flow_grid"])
    if mode == "bidirectional" and t > 1:
        result["next_on_flow_grid"] = run(list(range(t - 1)), list(range(1, t)))  # f_{t→t+1}
        result["to_next"] = to_lr(result["next_on_flow_grid"])
    if mode == "lookahead":
        padded = [mirrored_index(i, t) for i in range(t + model.config.lookahead)]
        steps = run(padded[:-1], padded[1:])  # (B, T + k − 1, 2, fh, fw); the first T − 1 are f_{t→t+1}
        result["steps"] = to_lr(steps)
        result["next_on_flow_grid"] = steps[:, : t - 1] if t > 1 else None
    return result


def neighbour_plan(
    model, mode: str, codes: Tensor, flows: dict, keys: Tensor, pooled: Tensor, descriptor: Tensor
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor | None] | None:
    """Where each frame reads its neighbour windows (None: no neighbours in this mode, or T = 1).

    Args:
        codes: `(B, T, S, h, w)`; keys: `(B, T, Ck, h, w)`; pooled, descriptor: `(B, T, ·, h, w)`.
    Returns:
        key table `(B, T', Ck, h, w)` (T' = 2T in look-ahead mode: the future neighbours' keys come from
        their per-frame state, so frame t still depends on frames ≤ t + k only), value frame `(T, D)`,
        key frame `(T, D)`, centres `(B, T, D, 2, h, w)`, presence `(T, D)` bool and the agreement bias
        `(B, T, D, heads, h, w)` (None without `temporal_agreement_bias`).
    """
    deltas = model.neighbour_deltas(mode)
    b, t = codes.shape[:2]
    if not deltas or t == 1:
        return None
    to_next = flows["to_next"] if mode == "bidirectional" else None
    if mode == "lookahead":
        to_next = flows["steps"][:, : t - 1]  # the padded steps start with f_{t→t+1}, t ≤ T − 2
    index = torch.arange(t)[:, None] + torch.tensor(deltas)[None, :]  # (T, D)
    present = ((index >= 0) & (index < t)).to(codes.device)
    frame = index.clamp(0, t - 1).to(codes.device)
    key_frame = frame  # the same tensor: the attention then works out the bilinear taps once
    table = keys
    if mode == "lookahead":
        future = torch.tensor([d > 0 for d in deltas], device=codes.device)
        key_frame = torch.where(future[None, :], frame + t, frame)
        alone = model.propagation(codes, mode="perframe")  # (B, T, S, h, w), the state of frame s alone
        alone_keys = model.keys(fold(pooled), fold(descriptor), fold(alone))  # (B·T, Ck, h, w)
        table = torch.cat([keys, rearrange(alone_keys, "(b t) c h w -> b t c h w", b=b)], dim=1)  # (B, 2T, Ck, h, w)
    centres, others = [], []
    for d, (delta, flow) in enumerate(zip(deltas, neighbour_flows(deltas, flows["to_prev"], to_next))):
        others.append(codes[:, frame[:, d]])  # (B, T, S, h, w), the code of frame t + Δ
        centre = model.temporal.centre(fold(codes), fold(others[-1]), fold(flow), delta)  # (B·T, 2, h, w)
        centres.append(rearrange(centre, "(b t) c h w -> b t c h w", b=b))
    centres = torch.stack(centres, dim=2)  # (B, T, D, 2, h, w)
    cell_bias = None
    if model.temporal.agreement is not None:
        cell_bias = model.temporal.agreement(
            fold(codes), torch.stack(others, dim=2).flatten(0, 1), centres.flatten(0, 1), deltas, present.repeat(b, 1)
        )  # (B·T, D, heads, h, w)
        cell_bias = rearrange(cell_bias, "(b t) d e h w -> b t d e h w", b=b)
    return table, frame, key_frame, centres, present, cell_bias
