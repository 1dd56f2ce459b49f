"""Temporal propagation of a hidden state over the LR grid: the one recurrent driver of both networks
(DESIGN.md §4.3–4.4, §5.5).

SPyNet flows between frames (computed by the caller), a recurrent branch per direction whose state is aligned
to the current frame with `SecondOrderMotionCompensation`, and the modes:

- `bidirectional`: a backward branch, then a forward branch that reads the backward state;
- `unidirectional`: the forward branch alone; the state at t depends on frames ≤ t only;
- `lookahead`: the forward branch reading the codes of t+1..t+k warped to t (mirrored padding at the end
  of the clip, `functional.temporal.lookahead_window`) where the backward state would be;
- `perframe`: the forward branch's first step on every frame (no previous state, no context): the state
  at t depends on frame t only.

`FeaturePropagation.iterate` is the driver: it dispatches on the mode and yields one state per frame; BasicAVSR
upsamples each state as it comes, VideoAnyUp stacks them (`forward`). `ForwardRecurrence` is the forward
branch's loop one frame at a time (the states of t−1 and t−2 and the flow f_{t−1→t−2}), used by the driver and
by both streams.

Optional same-shot gates (VideoAnyUp's `ShotTest`): `pair_gates` `(B, T−1)`, entry j the probability that
frames j and j+1 are of the same shot. A step multiplies its aligned previous states by the gate of the pair it
crosses (and the state of t∓2 by the pair before it), and the look-ahead context each future code by the gates
of the pairs up to it, so at a gate of 0 frame t starts afresh, exactly as the first frame of a clip does.
Without gates (BasicAVSR) nothing is multiplied.
"""

from __future__ import annotations

from typing import Iterator

import torch
from torch import Tensor, nn

from videoanyup.functional.temporal import padded_indices
from videoanyup.functional.warp import compose_flows, flow_warp
from videoanyup.layers.motion_compensation import SecondOrderMotionCompensation
from videoanyup.layers.residual import ResidualStack

MODES = ("bidirectional", "unidirectional", "lookahead", "perframe")


def advance_forward(
    propagation: "FeaturePropagation",
    code: Tensor,
    context: Tensor | None,
    states: list[Tensor],
    flow_to_prev: Tensor | None,
    prev_flow: Tensor | None,
    gates: list[Tensor] | None = None,
) -> Tensor:
    """One step of the forward branch, tensors in and out (what `ForwardRecurrence.step` runs, and what a
    compiled stream traces).

    Args:
        code: `(B, S, h, w)` code of frame t; context: `(B, S, h, w)` or None.
        states: `[s_{t−1}, s_{t−2}]` (0 to 2 of them, `(B, S, h, w)`).
        flow_to_prev: `(B, 2, h, w)` f_{t→t−1} (used when `states` is not empty).
        prev_flow: `(B, 2, h, w)` f_{t−1→t−2} (used when there are two states).
        gates: same-shot gates `(B,)` of the pairs (t−1, t) and (t−2, t−1), as many as `states`, or None.
    Returns:
        `(B, S, h, w)` the state of frame t.
    """
    flows = [flow_to_prev, prev_flow][: len(states)]
    return propagation.forward_step(code, context, states, flows, None if gates is None else gates[: len(states)])


class ForwardRecurrence:
    """The forward branch's loop, one frame at a time (batch or stream alike).

    Holds the states of t−1 and t−2 and the flow f_{t−1→t−2}; `step` aligns them to frame t (second-order
    motion compensation) and returns the new state. Memory: two states and one flow, whatever T.

    Args:
        propagation: the `FeaturePropagation` whose forward branch runs.
        perframe: every step starts afresh (no previous state): the state of t depends on frame t only.
    """

    def __init__(self, propagation: "FeaturePropagation", *, perframe: bool = False) -> None:
        self.propagation, self.perframe = propagation, perframe
        self.states: list[Tensor] = []  # [s_{t−1}, s_{t−2}]
        self.flow: Tensor | None = None  # f_{t−1→t−2}
        self.gate: Tensor | None = None  # same-shot gate of the pair (t−2, t−1)

    @property
    def started(self) -> bool:
        """Whether a previous state exists (so the next step needs the flow t→t−1)."""
        return bool(self.states)

    def step(
        self, code: Tensor, context: Tensor | None, flow_to_prev: Tensor | None, gate: Tensor | None = None
    ) -> Tensor:
        """Args:
            code: `(B, S, h, w)` code (or features) of frame t.
            context: `(B, S, h, w)` backward state or look-ahead context of t, or None (zeros).
            flow_to_prev: `(B, 2, h, w)` f_{t→t−1}; needed once `started`, ignored before.
            gate: `(B,)` same-shot gate of the pair (t−1, t), or None (no gating).
        Returns:
            `(B, S, h, w)` the state of frame t.
        """
        if self.perframe:
            return self.propagation.forward_step(code, context, [], [])
        if self.states and flow_to_prev is None:
            raise ValueError("flow_to_prev (B, 2, h, w) is needed once the recurrence has a previous state")
        state = advance_forward(self.propagation, code, context, self.states, flow_to_prev, self.flow, self.gates(gate))
        self.record(state, flow_to_prev, gate)
        return state

    def gates(self, gate: Tensor | None) -> list[Tensor] | None:
        """The gates of the pairs (t−1, t) and (t−2, t−1) for a step whose own pair has `gate` (None: ungated)."""
        if gate is None:
            return None
        return [gate, gate if self.gate is None else self.gate]

    def record(self, state: Tensor, flow_to_prev: Tensor | None, gate: Tensor | None = None) -> None:
        """Keep the state of frame t `(B, S, h, w)`, f_{t→t−1} `(B, 2, h, w)` and the gate of the pair (t−1, t) for
        the next step (a caller that ran `advance_forward` itself, e.g. a compiled stream step, records here)."""
        self.flow = flow_to_prev if self.states else None
        self.gate = gate if self.states else None
        self.states = [state, *self.states][:2]


def _per_sample(gate: Tensor, like: Tensor) -> Tensor:
    """`(B,)` gate shaped to multiply `like` `(B, ...)`, in its dtype."""
    return gate.to(like.dtype).view(-1, *([1] * (like.dim() - 1)))


def pair_gate(pair_gates: Tensor, a: int, b: int) -> Tensor | None:
    """The gate `(B,)` between frames a and b = a ± 1 of a clip (None when a == b: a frame with itself, as the
    mirrored padding of a one-frame clip gives)."""
    if a == b:
        return None
    return pair_gates[:, min(a, b)]


class FeaturePropagation(nn.Module):
    """Recurrent states `(B, T, S, h, w)` from frame codes `(B, T, S, h, w)` and LR flows.

    Args:
        channels: S, the width of the codes and states.
        blocks: residual blocks of each branch.
        window, deform_groups, offset_layers: options of `SecondOrderMotionCompensation`.
        lookahead: k, the future frames the `lookahead` mode reads.
        lookahead_blocks: residual blocks of the look-ahead fusion.
    """

    def __init__(
        self,
        channels: int,
        *,
        blocks: int = 1,
        window: int = 2,
        deform_groups: int = 4,
        offset_layers: int = 1,
        lookahead: int = 2,
        lookahead_blocks: int = 1,
    ) -> None:
        super().__init__()
        self.channels, self.lookahead = channels, lookahead

        def align() -> SecondOrderMotionCompensation:
            return SecondOrderMotionCompensation(
                channels, window=window, deform_groups=deform_groups, offset_layers=offset_layers
            )

        self.backward_align, self.forward_align = align(), align()
        self.backward_branch = ResidualStack(2 * channels, channels, blocks)
        self.forward_branch = ResidualStack(3 * channels, channels, blocks)
        self.lookahead_fuse = ResidualStack((lookahead + 1) * channels, channels, lookahead_blocks)

    def step(
        self,
        branch: nn.Module,
        align: nn.Module,
        code: Tensor,
        extra: list[Tensor],
        prev: list[Tensor],
        flows: list[Tensor],
        gates: list[Tensor] | None = None,
    ) -> Tensor:
        """One recurrent step.

        Args:
            code: `(B, S, h, w)` code of frame t.
            extra: further inputs (the backward state or the look-ahead context), `(B, S, h, w)` each.
            prev: states of t−1 and t−2 in the branch's direction (0, 1 or 2), `(B, S, h, w)`.
            flows: `[f_{t→t∓1}, f_{t∓1→t∓2}]`, as many as `prev`, `(B, 2, h, w)` each.
            gates: same-shot gates `(B,)` of the pairs (t, t∓1) and (t∓1, t∓2), as many as `prev`, or None.
        Returns:
            `(B, S, h, w)` the new state.
        """
        prev1 = prev[0] if prev else None
        prev2 = prev[1] if len(prev) > 1 else None
        flow1 = flows[0] if prev else None
        flow2 = compose_flows(flows[0], flows[1]) if len(prev) > 1 else None
        if gates is not None and prev2 is not None:
            prev2 = prev2 * _per_sample(gates[0] * gates[1], prev2)  # the state of t∓2 crosses both pairs
        aligned = align(code, prev1, prev2, flow1, flow2)
        if gates is not None and prev1 is not None:
            aligned = aligned * _per_sample(gates[0], aligned)
        return branch(torch.cat([code, *extra, aligned], dim=1))

    def forward_step(
        self,
        code: Tensor,
        context: Tensor | None,
        prev: list[Tensor],
        flows: list[Tensor],
        gates: list[Tensor] | None = None,
    ) -> Tensor:
        """A step of the forward branch.

        Args:
            code: `(B, S, h, w)` code of frame t.
            context: `(B, S, h, w)` backward state or look-ahead context of t, or None (zeros).
            prev, flows, gates: as for `step`, in the forward direction (flows t→t−1, t−1→t−2).
        Returns:
            `(B, S, h, w)`.
        """
        context = torch.zeros_like(code) if context is None else context
        return self.step(self.forward_branch, self.forward_align, code, [context], prev, flows, gates)

    def backward_states(self, codes: Tensor, flows_to_next: Tensor | None, pair_gates: Tensor | None = None) -> Tensor:
        """The backward branch: codes `(B, T, S, h, w)`, flows t→t+1 `(B, T−1, 2, h, w)` and optional same-shot
        gates `(B, T−1)` → states `(B, T, S, h, w)`."""
        t = codes.shape[1]
        states: list[Tensor] = [codes[:, 0]] * t
        for i in range(t - 1, -1, -1):
            later = [j for j in (i + 1, i + 2) if j < t]
            prev = [states[j] for j in later]
            flows = [flows_to_next[:, j - 1] for j in later]
            gates = None if pair_gates is None else [pair_gates[:, j - 1] for j in later]  # pairs (i, i+1), (i+1, i+2)
            states[i] = self.step(self.backward_branch, self.backward_align, codes[:, i], [], prev, flows, gates)
        return torch.stack(states, dim=1)

    def lookahead_context(
        self,
        code: Tensor,
        future_codes: list[Tensor],
        future_steps: list[Tensor],
        future_gates: list[Tensor | None] | None = None,
    ) -> Tensor:
        """Codes of t+1..t+k warped to t and fused with the code of t.

        Args:
            code: `(B, S, h, w)`.
            future_codes: k codes `(B, S, h, w)` of frames t+1..t+k (`lookahead_window`: mirrored past the end).
            future_steps: k flows `(B, 2, h, w)` between consecutive (padded) frames t+j−1 → t+j.
            future_gates: k same-shot gates `(B,)` of those pairs (None entries: a frame with itself), or None.
        Returns:
            `(B, S, h, w)`.
        """
        warped, flow, reach = [], None, None
        for j, (future, step) in enumerate(zip(future_codes, future_steps)):
            flow = step if flow is None else compose_flows(flow, step)  # f_{t→t+j}
            moved = flow_warp(future, flow)
            if future_gates is not None and future_gates[j] is not None:
                reach = future_gates[j] if reach is None else reach * future_gates[j]
            if future_gates is not None and reach is not None:
                moved = moved * _per_sample(reach, moved)
            warped.append(moved)
        return self.lookahead_fuse(torch.cat([code, *warped], dim=1))

    def recurrence(self, *, perframe: bool = False) -> ForwardRecurrence:
        """A fresh forward-branch loop (see `ForwardRecurrence`)."""
        return ForwardRecurrence(self, perframe=perframe)

    def lookahead_contexts(self, codes: Tensor, steps: Tensor, pair_gates: Tensor | None = None) -> Tensor:
        """Look-ahead contexts of a clip: codes `(B, T, S, h, w)`, the flows between consecutive mirrored-padded
        frames `(B, T+k−1, 2, h, w)` (`padded_indices`) and optional same-shot gates `(B, T−1)` →
        `(B, T, S, h, w)`."""
        t, k = codes.shape[1], self.lookahead
        padded = padded_indices(t, k)
        contexts = []
        for i in range(t):
            window = padded[i : i + k + 1]  # = lookahead_window(i, k, t)
            gates = None
            if pair_gates is not None:
                gates = [pair_gate(pair_gates, a, b) for a, b in zip(window[:-1], window[1:])]
            contexts.append(
                self.lookahead_context(
                    codes[:, i], [codes[:, j] for j in window[1:]], [steps[:, i + j] for j in range(k)], gates
                )
            )
        return torch.stack(contexts, dim=1)

    def iterate(
        self,
        codes: Tensor,
        *,
        mode: str,
        flows_to_prev: Tensor | None = None,
        flows_to_next: Tensor | None = None,
        lookahead_steps: Tensor | None = None,
        pair_gates: Tensor | None = None,
    ) -> Iterator[Tensor]:
        """The driver: the state `(B, S, h, w)` of each frame in turn.

        Args:
            codes: `(B, T, S, h, w)` codes (or features) of the frames.
            mode: one of `MODES`.
            flows_to_prev: `(B, T−1, 2, h, w)`, f_{t→t−1} for t = 1..T−1 (all modes but perframe, T > 1).
            flows_to_next: `(B, T−1, 2, h, w)`, f_{t→t+1} for t = 0..T−2 (bidirectional, T > 1).
            lookahead_steps: `(B, T+k−1, 2, h, w)`, flows between consecutive mirrored-padded frames (lookahead).
            pair_gates: `(B, T−1)` same-shot gates of the pairs (t, t+1), or None (no gating).
        """
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        t = codes.shape[1]
        if mode == "bidirectional":
            context = self.backward_states(codes, flows_to_next, pair_gates)
        elif mode == "lookahead":
            context = self.lookahead_contexts(codes, lookahead_steps, pair_gates)
        else:
            context = None
        loop = self.recurrence(perframe=mode == "perframe")
        for i in range(t):
            flow = flows_to_prev[:, i - 1] if loop.started else None  # f_{i→i−1}
            gate = pair_gates[:, i - 1] if pair_gates is not None and loop.started else None
            yield loop.step(codes[:, i], None if context is None else context[:, i], flow, gate)

    def forward(self, codes: Tensor, **options) -> Tensor:
        """States of every frame, `(B, T, S, h, w)`; `options` as for `iterate`."""
        return torch.stack(list(self.iterate(codes, **options)), dim=1)
