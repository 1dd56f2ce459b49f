"""The per-frame step of VideoAnyUp, shared by a clip and a stream (DESIGN.md §5.5, "One pipeline").

Everything frame t's output needs beyond its own LR quantities comes from its neighbours t + Δ: where their
windows sit, how much each counts, and their guidance for the queries. `frame_step` does all of it from a
`FrameSource`, which only says what is known about each frame:

- `record(i)`: frame i's `FrameRecord` (features, code, keys, the contrast-normalised structure);
- `step_flow(a, b)` / `step_grid_flow(a, b)`: the flow between consecutive frames a → b = a ± 1, on the LR grid
  and on the flow grid;
- `step_log_gate(a, b)`: log p of the shot test of that pair;
- `guidance(i)`: the HR guidance;
- `known(i)`: whether frame i exists (in the clip, or pushed to the stream so far).

A clip (`clip_source.ClipSource`) answers from whole-clip tensors, a stream (`videoanyup_stream`) from its ring
of recent frames; the neighbour plan — which Δ a mode reads, the flows t → t + Δ composed from the steps, the
gates multiplied along them, the look-ahead frames' own-state keys — is worked out here once for both. Stream
equals batch is the guard (`tests/test_videoanyup.py`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor

from videoanyup.functional.warp import compose_flows, resize_flow
from videoanyup.layers.frame_cues import FrameStructure, absent_cues, frame_structure, pair_cues
from videoanyup.layers.guidance_encoder import resize_guidance
from videoanyup.layers.guidance_fusion import FusionNeighbour


@dataclass
class FrameRecord:
    """What one frame (a batch of B) brings to its own step and to its neighbours'.

    Attributes:
        feats: `(B, C, h, w)` its LR features (the values).
        code: `(B, S, h, w)` its code (normalised features and pooled guidance).
        keys: `(B, Ck, h, w)` its keys (from the propagated state).
        alone_keys: `(B, Ck, h, w)` keys from its own state alone (read as a future neighbour in look-ahead mode,
            so frame t depends on frames ≤ t + k only), or None.
        structure: its `FrameStructure`.
    """

    feats: Tensor
    code: Tensor
    keys: Tensor
    alone_keys: Tensor | None
    structure: FrameStructure


class FrameSource(Protocol):
    """What `frame_step` reads about the frames around t (see the module docstring)."""

    def known(self, i: int) -> bool: ...

    def record(self, i: int) -> FrameRecord: ...

    def step_flow(self, a: int, b: int) -> Tensor: ...

    def step_grid_flow(self, a: int, b: int) -> Tensor: ...

    def step_log_gate(self, a: int, b: int) -> Tensor: ...

    def guidance(self, i: int) -> Tensor: ...


FUSION_NEIGHBOURS = {"bidirectional": (-1, 1), "lookahead": (-1, 1), "unidirectional": (-1,), "perframe": ()}


def pair_log_gates(model, structures: FrameStructure, others: FrameStructure, flows: Tensor) -> Tensor:
    """log p `(N,)` of the shot test for N pairs of consecutive frames (t, s): their structures and the LR flows
    t → s `(N, 2, h, w)`."""
    return F.logsigmoid(model.shot(pair_cues(structures, others, flows)))


def shot_logits_between(model, frames: Tensor, others: Tensor, lr_size: tuple[int, int]) -> Tensor:
    """The shot test's logits `(N,)` for N pairs of frames `(N, 3, H, W)` (any two frames, e.g. of two clips, as
    at a cut), on an LR grid `lr_size`: the same flow grid, flow and cues as within a clip."""
    size = model.flow_size(lr_size, tuple(frames.shape[-2:]))
    small, other_small = resize_guidance(frames, size), resize_guidance(others, size)
    with torch.no_grad():
        flow = resize_flow(model.flow(small, other_small), lr_size)  # (N, 2, h, w)
    return model.shot(pair_cues(frame_structure(small, lr_size), frame_structure(other_small, lr_size), flow))


@dataclass
class Neighbour:
    """Neighbour t + Δ as frame t's step reads it (absent: `record` None)."""

    delta: int
    record: FrameRecord | None
    flow: Tensor | None  # (B, 2, h, w) LR flow t → t + Δ, composed from the steps
    log_gate: Tensor | None  # (B,) log p along the pairs from t to t + Δ


def neighbours_of(model, source: FrameSource, t: int, mode: str) -> list[Neighbour]:
    """Frame t's neighbours in `mode` (`model.neighbour_deltas`), with their flows and gates composed along the
    one-step flows t → t ± 1 → t ± 2 … (a frame that is not known is absent)."""
    result = []
    for delta in model.neighbour_deltas(mode):
        sign = 1 if delta > 0 else -1
        path = [t + sign * j for j in range(abs(delta) + 1)]  # t, t ± 1, …, t + Δ
        if not all(source.known(i) for i in path):
            result.append(Neighbour(delta, None, None, None))
            continue
        flow, log_gate = None, None
        for a, b in zip(path[:-1], path[1:]):
            step = source.step_flow(a, b)
            flow = step if flow is None else compose_flows(flow, step)
            gate = source.step_log_gate(a, b)
            log_gate = gate if log_gate is None else log_gate + gate
        result.append(Neighbour(delta, source.record(t + delta), flow, log_gate))
    return result


@dataclass
class FrameInputs:
    """Everything frame t's output needs, gathered from a `FrameSource` (tensors and the static plan).

    Attributes:
        own: frame t's `FrameRecord`; guidance: its HR guidance `(B, Cg, H, W)`.
        neighbours: its `Neighbour`s in the mode's order (absent ones with `record` None).
        fusion: per side (t − 1, t + 1) the neighbour's HR guidance `(B, Cg, H, W)` and the flow t → it on the flow
            grid `(B, 2, fh, fw)`, or None where the fusion does not read that side.
        lookahead: whether future neighbours read their own-state keys (look-ahead mode).
    """

    own: FrameRecord
    guidance: Tensor
    neighbours: list[Neighbour]
    fusion: tuple[tuple[Tensor, Tensor] | None, tuple[Tensor, Tensor] | None]
    lookahead: bool


def gather(model, source: FrameSource, t: int, mode: str) -> FrameInputs:
    """Frame t's `FrameInputs` in `mode` (the neighbour plan, written once for a clip and a stream)."""
    neighbours = neighbours_of(model, source, t, mode) if model.temporal is not None else []
    sides = []
    for delta in (-1, 1):
        nb = next((n for n in neighbours if n.delta == delta), None)
        if model.fusion is None or delta not in FUSION_NEIGHBOURS[mode] or nb is None or nb.record is None:
            sides.append(None)
        else:
            sides.append((source.guidance(t + delta), source.step_grid_flow(t, t + delta)))
    return FrameInputs(source.record(t), source.guidance(t), neighbours, tuple(sides), mode == "lookahead")


def upsample_frame(model, inputs: FrameInputs, plan, *, query_tile: int | None = None, out: Tensor | None = None) -> Tensor:
    """Frame t's output `(B, C, H, W)` from its `FrameInputs`: neighbour windows, fused queries, window attention
    (tensor operations only: what a compiled stream traces).

    Args:
        model: the `VideoAnyUp`; plan: `model.attention.plan(...)` of the grid; query_tile: HR queries per
            attention block; out: a `(B, C, H, W)` tensor to write into (None: a new one).
    """
    own, guidance = inputs.own, inputs.guidance
    hr_size = tuple(guidance.shape[-2:])
    candidates, cues = None, {}
    if inputs.neighbours:
        candidates, cues = neighbour_candidates(model, own, inputs.neighbours, inputs.lookahead)
    queries = guidance
    if any(side is not None for side in inputs.fusion):
        sides = []
        for delta, side in zip((-1, 1), inputs.fusion):
            if side is None:
                sides.append(None)
                continue
            nb = next(n for n in inputs.neighbours if n.delta == delta)
            other, grid_flow = side
            sides.append(FusionNeighbour(other, resize_flow(grid_flow, hr_size), cues[delta], nb.log_gate.exp()))
        queries = model.fusion(guidance, *sides)
    return model.attention(queries, own.keys, own.feats, query_tile=query_tile, out=out, plan=plan, neighbours=candidates)


def frame_step(
    model,
    source: FrameSource,
    t: int,
    mode: str,
    plan,
    *,
    query_tile: int | None = None,
    out: Tensor | None = None,
) -> Tensor:
    """Frame t's output `(B, C, H, W)`: `gather` then `upsample_frame`."""
    return upsample_frame(model, gather(model, source, t, mode), plan, query_tile=query_tile, out=out)


def neighbour_candidates(model, own: FrameRecord, neighbours: list[Neighbour], lookahead: bool):
    """The `NeighbourCandidates` of frame t, and the pair cues `(B, PAIR_CUES, h, w)` per present Δ."""
    temporal = model.temporal
    b = own.feats.shape[0]
    deltas = tuple(n.delta for n in neighbours)
    zero = torch.zeros_like(own.code[:, :2])  # (B, 2, h, w)
    values, tables, centres, codes, pairs, gates, present = [], [], [], [], [], [], []
    cues = {}
    for nb in neighbours:
        here = nb.record is not None
        present.append(here)
        if not here:  # placeholders, masked out by the bias
            values.append(own.feats)
            tables.append(own.keys)
            centres.append(temporal.centre(own.code, own.code, zero, 0))
            codes.append(own.code)
            pairs.append(absent_cues(own.structure))
            gates.append(own.code.new_zeros(b))
            continue
        record = nb.record
        values.append(record.feats)
        tables.append(record.alone_keys if lookahead and nb.delta > 0 else record.keys)
        centres.append(temporal.centre(own.code, record.code, nb.flow, nb.delta))
        codes.append(record.code)
        cues[nb.delta] = pair_cues(own.structure, record.structure, nb.flow)
        pairs.append(cues[nb.delta])
        gates.append(nb.log_gate.to(own.code.dtype))
    d = len(deltas)
    rows = torch.arange(b * d, device=own.feats.device).view(b, d)  # row n·D + d of the tables
    present_mask = torch.tensor(present, device=rows.device)[None].expand(b, d)
    centre = torch.stack(centres, dim=1)  # (B, D, 2, h, w)
    log_gates = torch.stack(gates, dim=1)  # (B, D) log p of each neighbour (0 for the absent ones)
    weight = present_mask.to(log_gates.dtype) * log_gates.exp()  # in the agreement's mean: behind a cut = absent
    cell_bias = temporal.agreement(
        own.code, torch.stack(codes, dim=1), centre, deltas, weight, torch.stack(pairs, dim=1)
    )  # (B, D, heads, h, w)
    cell_bias = cell_bias + log_gates.to(cell_bias.dtype)[:, :, None, None, None]  # + log p
    candidates = temporal.candidates(
        torch.stack(tables, dim=1).flatten(0, 1),  # (B·D, Ck, h, w)
        torch.stack(values, dim=1).flatten(0, 1),  # (B·D, C, h, w)
        rows,
        rows,
        centre,
        deltas,
        present_mask,
        cell_bias,
    )
    return candidates, cues
