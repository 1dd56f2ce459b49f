"""Temporal propagation of a hidden state over the LR feature grid (DESIGN.md §5.5).

The machinery of BasicAVSR (§4.3–4.4) applied to VideoAnyUp's frame codes: SPyNet flows between the
guidance frames (at a reduced resolution, then resized to the LR grid), a recurrent branch per direction
whose state is aligned to the current frame with `SecondOrderMotionCompensation`, and the same modes:

- `bidirectional`: a backward branch, then a forward branch that reads the backward state;
- `unidirectional`: the forward branch alone; the state at t depends on frames ≤ t only;
- `lookahead`: the forward branch reading the codes of t+1..t+k warped to t (mirrored padding at the end
  of the clip) where the backward state would be;
- `perframe`: the forward branch's first step on every frame (no previous state, no context): the state
  at t depends on frame t only.

One implementation serves both networks and their streams: `ForwardRecurrence` is the forward branch's
loop (it holds s_{t−1}, s_{t−2} and f_{t−1→t−2} and takes one frame per `step`), used by
`FeaturePropagation.forward`, `BasicAVSR.forward` and both streams; `lookahead_contexts` builds the look-ahead
contexts of a whole clip for both networks.

The frame codes are made from normalised features and the guidance only (the agnostic descriptor and the
pooled guidance features), so the state — and the attention weights it feeds — does not change when the
features are scaled, and is the same for every permutation of their channels.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from videoanyup.functional.temporal import mirrored_index
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
) -> Tensor:
    """One step of the forward branch, tensors in and out (what `ForwardRecurrence.step` runs, and what a
    compiled stream traces).

    Args:
        code: `(B, S, h, w)` code of frame t; context: `(B, S, h, w)` or None.
        states: `[s_{t−1}, s_{t−2}]` (0 to 2 of them, `(B, S, h, w)`).
        flow_to_prev: `(B, 2, h, w)` f_{t→t−1} (used when `states` is not empty).
        prev_flow: `(B, 2, h, w)` f_{t−1→t−2} (used when there are two states).
    Returns:
        `(B, S, h, w)` the state of frame t.
    """
    flows = [flow_to_prev, prev_flow][: len(states)]
    return propagation.forward_step(code, context, states, flows)


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

    @property
    def started(self) -> bool:
        """Whether a previous state exists (so the next step needs the flow t→t−1)."""
        return bool(self.states)

    def step(self, code: Tensor, context: Tensor | None, flow_to_prev: Tensor | None) -> Tensor:
        """Args:
            code: `(B, S, h, w)` code (or features) of frame t.
            context: `(B, S, h, w)` backward state or look-ahead context of t, or None (zeros).
            flow_to_prev: `(B, 2, h, w)` f_{t→t−1}; needed once `started`, ignored before.
        Returns:
            `(B, S, h, w)` the state of frame t.
        """
        if self.perframe:
            return self.propagation.forward_step(code, context, [], [])
        if self.states and flow_to_prev is None:
            raise ValueError("flow_to_prev (B, 2, h, w) is needed once the recurrence has a previous state")
        state = advance_forward(self.propagation, code, context, self.states, flow_to_prev, self.flow)
        self.record(state, flow_to_prev)
        return state

    def record(self, state: Tensor, flow_to_prev: Tensor | None) -> None:
        """Keep the state of frame t `(B, S, h, w)` and f_{t→t−1} `(B, 2, h, w)` for the next step (a caller that
        ran `advance_forward` itself, e.g. a compiled stream step, records its result here)."""
        self.flow = flow_to_prev if self.states else None
        self.states = [state, *self.states][:2]


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
    ) -> Tensor:
        """One recurrent step.

        Args:
            code: `(B, S, h, w)` code of frame t.
            extra: further inputs (the backward state or the look-ahead context), `(B, S, h, w)` each.
            prev: states of t−1 and t−2 in the branch's direction (0, 1 or 2), `(B, S, h, w)`.
            flows: `[f_{t→t∓1}, f_{t∓1→t∓2}]`, as many as `prev`, `(B, 2, h, w)` each.
        Returns:
            `(B, S, h, w)` the new state.
        """
        prev1 = prev[0] if prev else None
        prev2 = prev[1] if len(prev) > 1 else None
        flow1 = flows[0] if prev else None
        flow2 = compose_flows(flows[0], flows[1]) if len(prev) > 1 else None
        aligned = align(code, prev1, prev2, flow1, flow2)
        return branch(torch.cat([code, *extra, aligned], dim=1))

    def forward_step(self, code: Tensor, context: Tensor | None, prev: list[Tensor], flows: list[Tensor]) -> Tensor:
        """A step of the forward branch.

        Args:
            code: `(B, S, h, w)` code of frame t.
            context: `(B, S, h, w)` backward state or look-ahead context of t, or None (zeros).
            prev, flows: as for `step`, in the forward direction (flows t→t−1, t−1→t−2).
        Returns:
            `(B, S, h, w)`.
        """
        context = torch.zeros_like(code) if context is None else context
        return self.step(self.forward_branch, self.forward_align, code, [context], prev, flows)

    def backward_states(self, codes: Tensor, flows_to_next: Tensor | None) -> Tensor:
        """The backward branch: codes `(B, T, S, h, w)`, flows t→t+1 `(B, T−1, 2, h, w)` → states."""
        t = codes.shape[1]
        states: list[Tensor] = [codes[:, 0]] * t
        for i in range(t - 1, -1, -1):
            prev = [states[j] for j in (i + 1, i + 2) if j < t]
            flows = [flows_to_next[:, j - 1] for j in (i + 1, i + 2) if j < t]
            states[i] = self.step(self.backward_branch, self.backward_align, codes[:, i], [], prev, flows)
        return torch.stack(states, dim=1)

    def lookahead_context(self, code: Tensor, future_codes: list[Tensor], future_steps: list[Tensor]) -> Tensor:
        """Codes of t+1..t+k warped to t and fused with the code of t.

        Args:
            code: `(B, S, h, w)`.
            future_codes: k codes `(B, S, h, w)` of frames t+1..t+k (mirrored past the clip's end).
            future_steps: k flows `(B, 2, h, w)` between consecutive (padded) frames t+j−1 → t+j.
        Returns:
            `(B, S, h, w)`.
        """
        warped, flow = [], None
        for future, step in zip(future_codes, future_steps):
            flow = step if flow is None else compose_flows(flow, step)  # f_{t→t+j}
            warped.append(flow_warp(future, flow))
        return self.lookahead_fuse(torch.cat([code, *warped], dim=1))

    def recurrence(self, *, perframe: bool = False) -> ForwardRecurrence:
        """A fresh forward-branch loop (see `ForwardRecurrence`)."""
        return ForwardRecurrence(self, perframe=perframe)

    def lookahead_contexts(self, codes: Tensor, steps: Tensor) -> Tensor:
        """Look-ahead contexts of a clip: codes `(B, T, S, h, w)` and the flows between consecutive
        mirrored-padded frames `(B, T+k−1, 2, h, w)` → `(B, T, S, h, w)`."""
        t, k = codes.shape[1], self.lookahead
        padded = [mirrored_index(i, t) for i in range(t + k)]
        return torch.stack(
            [
                self.lookahead_context(
                    codes[:, i],
                    [codes[:, padded[i + j]] for j in range(1, k + 1)],
                    [steps[:, i + j - 1] for j in range(1, k + 1)],
                )
                for i in range(t)
            ],
            dim=1,
        )

    def forward(
        self,
        codes: Tensor,
        *,
        mode: str,
        flows_to_prev: Tensor | None = None,
        flows_to_next: Tensor | None = None,
        lookahead_steps: Tensor | None = None,
    ) -> Tensor:
        """States of every frame.

        Args:
            codes: `(B, T, S, h, w)`.
            mode: one of `MODES`.
            flows_to_prev: `(B, T−1, 2, h, w)`, f_{t→t−1} for t = 1..T−1 (all modes but perframe, T > 1).
            flows_to_next: `(B, T−1, 2, h, w)`, f_{t→t+1} for t = 0..T−2 (bidirectional, T > 1).
            lookahead_steps: `(B, T+k−1, 2, h, w)`, flows between consecutive mirrored-padded frames
                (lookahead).
        Returns:
            `(B, T, S, h, w)`.
        """
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        t = codes.shape[1]
        if mode == "bidirectional":
            context = self.backward_states(codes, flows_to_next)
        elif mode == "lookahead":
            context = self.lookahead_contexts(codes, lookahead_steps)
        else:
            context = None
        loop = self.recurrence(perframe=mode == "perframe")
        states = []
        for i in range(t):
            flow = flows_to_prev[:, i - 1] if loop.started else None  # f_{i→i−1}
            states.append(loop.step(codes[:, i], None if context is None else context[:, i], flow))
        return torch.stack(states, dim=1)
