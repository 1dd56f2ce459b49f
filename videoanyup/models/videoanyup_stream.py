"""Online VideoAnyUp: push one (features, frame) pair at a time, get upsampled features back.

`VideoAnyUp.stream(mode=...)` serves the causal modes:
- "unidirectional" and "perframe": the output of frame t is returned by the push of frame t;
- "lookahead" (k future frames): the output of frame t is returned by the push of frame t+k; `flush()`
  returns the last k outputs with the mirrored padding of the offline model.

The stream is a scheduler, not a second model: a pushed frame gets the per-frame part of step 1 (descriptor,
guidance, code, structure: `_push_step`); once frame t's inputs are complete, the recurrent step (the one
`ForwardRecurrence` of `FeaturePropagation`) and the keys run, and the same per-frame step as a clip
(`frame_step.gather` + `upsample_frame`) reads the ring as its `FrameSource`. So the outputs equal those of
`VideoAnyUp.forward` on the whole clip in the same mode (up to float rounding: flows are computed one pair at a
time instead of batched). Bidirectional mode needs the whole clip and has no stream. The default mode is the
model's if it is causal, else the first causal mode the weights were trained for (`default_stream_mode`).

The ring keeps the last frames' LR quantities, flows and HR guidance (t − r … t + k), never the whole clip: its
memory does not grow with T. What it holds across frames is copied into buffers made with the first frames and
reused (`SlotRing`), so every frame allocates and frees the same temporaries and the peak memory stays flat.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence

import torch
from torch import Tensor

from videoanyup.functional.grid import output_size
from videoanyup.functional.temporal import lookahead_window
from videoanyup.functional.warp import resize_flow
from videoanyup.layers.feature_propagation import advance_forward
from videoanyup.layers.frame_cues import FrameStructure, frame_structure
from videoanyup.layers.guidance_encoder import resize_guidance
from videoanyup.layers.window_attention import default_query_tile
from videoanyup.models.frame_step import FrameInputs, FrameRecord, gather, pair_log_gates, upsample_frame
from videoanyup.models.stream_slots import SlotRing
from videoanyup.validation import MAX_OUTPUT_PIXELS, check_output_size, compute_dtype


@dataclass
class _Pushed:
    """What the stream keeps of one pushed frame (batch B)."""

    feats: Tensor  # (B, C, h, w)
    descriptor: Tensor  # (B, M, h, w)
    pooled: Tensor  # (B, Cg, h, w)
    code: Tensor  # (B, S, h, w)
    small: Tensor  # (B, 3, fh, fw) the frame on the flow grid
    structure: FrameStructure
    guidance: Tensor | None  # (B, Cg, H, W), dropped once no step reads it
    alone_keys: Tensor | None  # (B, Ck, h, w) keys from the frame's own state (look-ahead neighbours)
    keys: Tensor | None = None  # (B, Ck, h, w), once the frame is out


class VideoAnyUpStream:
    """Push frames in order; see the module docstring.

    Args:
        model: a `VideoAnyUp`.
        size, scale: the output grid, as for `VideoAnyUp.forward` (default: the first frame's size).
        mode: "unidirectional", "lookahead" or "perframe" (default: `model.default_stream_mode()`).
        query_tile: HR queries per attention chunk.
        compile: run each frame's work through `torch.compile` (True: the default backend, inductor; or a
            backend's name): the step of a pushed frame (descriptor, guidance, code, structure) and the step of
            an emitted frame (recurrent step, keys, neighbour windows, fused queries, window attention). Both
            trace as one graph each: the attention's plan and blocks are made with the first frame, and the
            flows and gates are computed before the step. The first frames compile (fewer previous states and
            neighbours); a stream keeps its shapes, so nothing recompiles after them.
    """

    def __init__(
        self,
        model,
        *,
        size: Sequence[int] | None = None,
        scale: float | Sequence[float] | None = None,
        mode: str | None = None,
        query_tile: int | None = None,
        compile: bool | str = False,
        max_pixels: int = MAX_OUTPUT_PIXELS,
    ) -> None:
        self.max_pixels = max_pixels  # the most pixels an output may have (`validation.check_output_size`)
        mode = model.check_mode(model.default_stream_mode() if mode is None else mode)
        if mode not in model.stream_modes:
            raise ValueError(
                'mode="bidirectional" needs the whole clip; stream "unidirectional", "lookahead" or "perframe"'
            )
        if not isinstance(compile, (bool, str)):
            raise ValueError(f"compile must be True, False or a torch.compile backend name, got {compile!r}")
        self.model, self.mode, self.query_tile = model, mode, query_tile
        self.size, self.scale = size, scale
        self.k = model.config.lookahead if mode == "lookahead" else 0
        self.frames: dict[int, _Pushed] = {}
        self.pushed = 0  # frames pushed so far
        self.emitted = 0  # outputs returned so far
        self.length: int | None = None  # the clip's length, once `flush` knows it
        self.loop = model.propagation.recurrence(perframe=mode == "perframe")  # the batch model's forward loop
        self._grid_flows: dict[tuple[int, int], Tensor] = {}
        self._flows: dict[tuple[int, int], Tensor] = {}
        self._gates: dict[int, Tensor] = {}
        # At most 2k + r + 3 frames are held at once (r: reach); the HR guidance of frames t − 1 … t + k.
        self.held = SlotRing(2 * self.k + model.config.temporal_reach + 3)
        self.held_guidance = SlotRing(self.k + 2)
        self.hr_size: tuple[int, int] | None = None
        self.lr_shape: tuple[int, ...] | None = None
        self.deltas = model.neighbour_deltas(mode)
        self._push, self._step = self._push_step, self._frame_step
        if compile:
            backend = "inductor" if compile is True else compile
            self._push = torch.compile(self._push_step, backend=backend, dynamic=False)
            self._step = torch.compile(self._frame_step, backend=backend, dynamic=False)

    # -- the FrameSource of `frame_step` --------------------------------------------------------
    def known(self, i: int) -> bool:
        return 0 <= i < (self.pushed if self.length is None else self.length)

    def record(self, i: int) -> FrameRecord:
        f = self.frames[i]
        return FrameRecord(f.feats, f.code, f.keys, f.alone_keys, f.structure)

    def step_grid_flow(self, a: int, b: int) -> Tensor:
        """Flow a → b on the flow grid `(B, 2, fh, fw)`, cached."""
        if (a, b) not in self._grid_flows:
            flow = self.model.flow(self.frames[a].small, self.frames[b].small)
            self._grid_flows[(a, b)] = self.held.hold(("grid flow", b - a), a, flow)
        return self._grid_flows[(a, b)]

    def step_flow(self, a: int, b: int) -> Tensor:
        """LR flow a → b `(B, 2, h, w)`, cached."""
        if (a, b) not in self._flows:
            flow = resize_flow(self.step_grid_flow(a, b), tuple(self.lr_shape[-2:]))
            self._flows[(a, b)] = self.held.hold(("flow", b - a), a, flow)
        return self._flows[(a, b)]

    def step_log_gate(self, a: int, b: int) -> Tensor:
        """log p `(B,)` of the shot test of the pair (min(a, b), max(a, b)), cached."""
        j = max(a, b)
        if j not in self._gates:
            later, earlier = self.frames[j], self.frames[j - 1]
            gate = pair_log_gates(self.model, later.structure, earlier.structure, self.step_flow(j, j - 1))
            self._gates[j] = self.held.hold("log gate", j, gate)
        return self._gates[j]

    def guidance(self, i: int) -> Tensor:
        return self.frames[i].guidance

    # -- pushing and emitting ---------------------------------------------------------------------
    @torch.inference_mode()
    def push(self, feats: Tensor, frame: Tensor) -> list[Tensor]:
        """Add frame t.

        Args:
            feats: `(B, C, h, w)` features of frame t; frame: `(B, 3, H0, W0)` its RGB frame in [0, 1].
        Returns:
            the outputs `(B, C, H, W)` that became ready (0 or 1 of them).
        """
        if self.length is not None:
            raise ValueError("this stream was flushed: start a new one with model.stream()")
        for x, name in ((feats, "feats"), (frame, "frame")):
            if not isinstance(x, Tensor) or x.dim() != 4:
                raise ValueError(f"{name} must be one frame, a 4-D tensor (B, C, h, w), got {getattr(x, 'shape', x)!r}")
        f5, v5, _ = self.model.check_inputs(feats, frame)
        feats, frame = f5[:, 0], v5[:, 0].to(compute_dtype(self.model))  # guidance in the weights' dtype
        h, w = feats.shape[-2:]
        if self.lr_shape is None:
            self._start(feats, frame)
        elif tuple(feats.shape) != self.lr_shape or tuple(frame.shape[-2:]) != self.video_size:
            raise ValueError(
                f"every pushed frame must have the shapes of the first: feats {self.lr_shape}, frame size "
                f"{self.video_size}; got {tuple(feats.shape)} and {tuple(frame.shape[-2:])}"
            )
        t = self.pushed
        descriptor, pooled, code, small, energy, low, photometry, thumbnail, guidance, alone_keys = self._push(feats, frame)
        hold = self.held.hold
        self.frames[t] = _Pushed(
            hold("feats", t, feats), hold("descriptor", t, descriptor), hold("pooled", t, pooled), hold("code", t, code),
            hold("small", t, small),
            FrameStructure(
                hold("energy", t, energy), hold("low", t, low), hold("photometry", t, photometry),
                hold("thumbnail", t, thumbnail),
            ),
            self.held_guidance.hold("guidance", t, guidance), hold("alone keys", t, alone_keys),
        )
        self.pushed += 1
        ready = []
        while self.emitted + self.k < self.pushed:
            ready.append(self._emit(self.emitted))
        return ready

    def _start(self, feats: Tensor, frame: Tensor) -> None:
        """The grid of the stream, from its first frame: output size, attention plan and blocks."""
        h, w = feats.shape[-2:]
        self.lr_shape = tuple(feats.shape)
        self.video_size = (int(frame.shape[-2]), int(frame.shape[-1]))
        default = self.size is None and self.scale is None
        self.hr_size = self.video_size if default else output_size(h, w, scale=self.scale, size=self.size)
        check_output_size(self.hr_size, (h, w), scale=self.scale, max_pixels=self.max_pixels)
        attention = self.model.attention
        self.plan = attention.plan((h, w), self.hr_size, feats.device)
        tile = default_query_tile(feats.device) if self.query_tile is None else self.query_tile
        if not isinstance(tile, bool) and isinstance(tile, int) and tile > 0:  # else the attention names it
            self.plan.blocks(feats.shape[0], tile, per_block_prior=attention.prior is not None and self.plan.classes is None)

    def _push_step(self, feats: Tensor, frame: Tensor) -> tuple:
        """A pushed frame's own work, tensor operations only (what `compile=True` compiles).

        Args:
            feats: `(B, C, h, w)`; frame: `(B, 3, H0, W0)`.
        Returns:
            descriptor `(B, M, h, w)`, pooled guidance `(B, Cg, h, w)`, code `(B, S, h, w)`, the frame on the flow
            grid `(B, 3, fh, fw)`, its structure's energy, low band, photometry and thumbnail, the HR guidance
            `(B, Cg, H, W)`, and in look-ahead mode with future neighbours the keys of the frame's own state
            `(B, Ck, h, w)` (else None).
        """
        model = self.model
        lr_size = tuple(feats.shape[-2:])
        descriptor, pooled, guidance = model.describe(feats, frame, self.hr_size)
        small = resize_guidance(frame, model.flow_size(lr_size, self.video_size)).to(descriptor.dtype)
        code = model.code(descriptor, pooled)
        structure = frame_structure(small, lr_size)
        alone_keys = None
        if self.mode == "lookahead" and any(d > 0 for d in self.deltas):
            alone = model.propagation.forward_step(code, None, [], [])  # the frame's state on its own
            alone_keys = model.keys(pooled, descriptor, alone)
        return (descriptor, pooled, code, small, *structure.tensors(), guidance, alone_keys)

    @torch.inference_mode()
    def flush(self) -> list[Tensor]:
        """The outputs still held back (look-ahead mode), with mirrored padding at the clip's end."""
        self.length = self.pushed
        ready = []
        while self.emitted < self.pushed:
            ready.append(self._emit(self.emitted))
        return ready

    def _emit(self, t: int) -> Tensor:
        """Frame t's recurrent step, keys and per-frame step."""
        record = self.frames[t]
        context_inputs = None
        if self.mode == "lookahead":  # the codes of t+1..t+k, the flows and gates between them (mirrored at the end)
            window = lookahead_window(t, self.k, self.length)
            pairs = list(zip(window[:-1], window[1:]))
            context_inputs = (
                [self.frames[i].code for i in window[1:]],
                [self.step_flow(a, b) for a, b in pairs],
                [None if a == b else self.step_log_gate(a, b).exp() for a, b in pairs],
            )
        to_prev, gate = None, None
        if self.mode != "perframe" and self.loop.started:
            to_prev, gate = self.step_flow(t, t - 1), self.step_log_gate(t, t - 1).exp()
        inputs = gather(self.model, self, t, self.mode)  # the neighbour plan: keys of frame t are set in the step
        out, state, keys = self._step(
            record.code, record.pooled, record.descriptor, context_inputs, list(self.loop.states), to_prev,
            self.loop.flow, self.loop.gates(gate), inputs,
        )
        if self.mode != "perframe":
            self.loop.record(self.held.hold("state", t, state), to_prev, gate)
        record.keys = self.held.hold("keys", t, keys)
        self.emitted += 1
        self._release(t)
        return out

    def _frame_step(
        self,
        code: Tensor,
        pooled: Tensor,
        descriptor: Tensor,
        context_inputs: tuple | None,
        states: list[Tensor],
        to_prev: Tensor | None,
        prev_flow: Tensor | None,
        gates: list[Tensor] | None,
        inputs: FrameInputs,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """One emitted frame's work, tensor operations only (what `compile=True` compiles).

        Args:
            code, pooled, descriptor: frame t's `(B, ·, h, w)`.
            context_inputs: look-ahead mode: the future codes, the flows and gates between them; else None.
            states: `[s_{t−1}, s_{t−2}]` (0 to 2); to_prev: f_{t→t−1} `(B, 2, h, w)`; prev_flow: f_{t−1→t−2};
            gates: the same-shot gates of the pairs (t−1, t), (t−2, t−1) (None: first frame or perframe).
            inputs: frame t's `FrameInputs` without its keys.
        Returns:
            the output `(B, C, H, W)`, the state `(B, S, h, w)` and the keys `(B, Ck, h, w)` of frame t.
        """
        model = self.model
        context = None if context_inputs is None else model.propagation.lookahead_context(code, *context_inputs)
        if self.mode == "perframe":
            state = model.propagation.forward_step(code, context, [], [])
        else:
            state = advance_forward(model.propagation, code, context, states, to_prev, prev_flow, gates)
        keys = model.keys(pooled, descriptor, state)
        inputs = replace(inputs, own=replace(inputs.own, keys=keys))
        out = upsample_frame(model, inputs, self.plan, query_tile=self.query_tile)
        return out, state, keys

    def _release(self, t: int) -> None:
        """Forget what no later step reads once frame t is out: frames before min(t − k − 1, t + 1 − reach) (the
        mirrored padding and the neighbour windows read back that far), their flows and gates."""
        reach = self.model.config.temporal_reach if self.deltas else 1
        keep = min(t - self.k - 1, t + 1 - reach)  # what mirrored padding and the neighbour windows may read
        for old in [i for i in self.frames if i < keep]:
            del self.frames[old]
        self._grid_flows = {key: v for key, v in self._grid_flows.items() if min(key) >= keep}
        self._flows = {key: v for key, v in self._flows.items() if min(key) >= keep}
        self._gates = {j: v for j, v in self._gates.items() if j - 1 >= keep}
