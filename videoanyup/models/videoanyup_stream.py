"""Online VideoAnyUp: push one (features, frame) pair at a time, get upsampled features back.

`VideoAnyUp.stream(mode=...)` serves the causal modes:
- "unidirectional" and "perframe": the output of frame t is returned by the push of frame t;
- "lookahead" (k future frames): the output of frame t is returned by the push of frame t+k; `flush()`
  returns the last k outputs with the mirrored padding of the offline model.
The outputs equal those of `VideoAnyUp.forward` on the whole clip in the same mode (up to float
rounding: flows are computed one pair at a time instead of batched). Bidirectional mode needs the whole
clip and has no stream. The default mode is the model's if it is causal, else the first causal mode the
weights were trained for (unidirectional, lookahead, perframe), so every trained model streams.

With spatio-temporal attention (`temporal_window` > 0) the stream keeps a ring of the last frames' LR
keys, features and flows (t − r … t + k), never the whole clip: its memory does not grow with T. What it
holds across frames is copied into buffers made with the first frames and reused (`SlotRing`; the HR guidance of
frames t − 1 … t + k in k + 2 of them), so every frame allocates and frees the same temporaries and the peak
memory stays flat in T.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor

from videoanyup.functional.grid import output_size
from videoanyup.functional.temporal import mirrored_index
from videoanyup.functional.warp import compose_flows, resize_flow
from videoanyup.layers.feature_propagation import advance_forward
from videoanyup.layers.guidance_encoder import resize_guidance
from videoanyup.layers.sharpness_prior import energy_window
from videoanyup.layers.window_attention import default_query_tile
from videoanyup.models.stream_slots import SlotRing
from videoanyup.validation import compute_dtype
from videoanyup.validation import MAX_OUTPUT_PIXELS, check_output_size


@dataclass
class _Frame:
    """What the stream keeps of one pushed frame (batch B)."""

    feats: Tensor  # (B, C, h, w)
    descriptor: Tensor  # (B, M, h, w)
    pooled: Tensor  # (B, Cg, h, w)
    code: Tensor  # (B, S, h, w)
    small: Tensor  # (B, 3, fh, fw) frame on the flow grid
    guidance: Tensor | None  # (B, Cg, H, W), dropped once the frame is out
    alone_keys: Tensor | None  # (B, Ck, h, w) keys from the frame's own state (look-ahead neighbours)
    fine: Tensor | None  # (B, 3, H', W') frame at the sharpness prior's flow size (None without the prior)
    keys: Tensor | None = None  # (B, Ck, h, w) keys, once the frame is out
    to_prev: Tensor | None = None  # (B, 2, h, w) LR flow f_{t→t−1}, once the frame is out


CAUSAL_MODES = ("unidirectional", "lookahead", "perframe")


def default_stream_mode(model) -> str:
    """The model's mode if causal, else the first causal mode its weights serve."""
    if model.config.mode in CAUSAL_MODES and (model.trained_modes is None or model.config.mode in model.trained_modes):
        return model.config.mode
    for mode in CAUSAL_MODES:
        if model.trained_modes is None or mode in model.trained_modes:
            return mode
    raise ValueError(
        f"these weights were trained for {list(model.trained_modes)} only, and none of them streams; "
        f"a stream needs one of {list(CAUSAL_MODES)}"
    )


class VideoAnyUpStream:
    """Push frames in order; see the module docstring.

    Args:
        model: a `VideoAnyUp`.
        size, scale: the output grid, as for `VideoAnyUp.forward` (default: the first frame's size).
        mode: "unidirectional", "lookahead" or "perframe" (default: `default_stream_mode(model)`).
        query_tile: HR queries per attention chunk.
        compile: run each frame's work through `torch.compile` (True: the default backend, inductor; or a
            backend's name): the step of a pushed frame (descriptor, guidance, code) and the step of an
            emitted frame (flow to the previous frame, look-ahead context, recurrent step, keys, neighbour
            windows, window attention, blend). Both trace as one graph each: the attention's plan and
            blocks are made with the first frame, and the look-ahead flows between future frames are
            computed before the step. The first frames compile (fewer previous states and neighbours);
            a stream keeps its shapes, so nothing recompiles after them.
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
        mode = model.check_mode(default_stream_mode(model) if mode is None else mode)
        if mode == "bidirectional":
            raise ValueError(
                'mode="bidirectional" needs the whole clip; stream "unidirectional", "lookahead" or "perframe"'
            )
        if not isinstance(compile, (bool, str)):
            raise ValueError(f"compile must be True, False or a torch.compile backend name, got {compile!r}")
        self.model, self.mode, self.query_tile = model, mode, query_tile
        self.size, self.scale = size, scale
        self.k = model.config.lookahead if mode == "lookahead" else 0
        self.frames: dict[int, _Frame] = {}
        self.pushed = 0  # frames pushed so far
        self.emitted = 0  # outputs returned so far
        self.loop = model.propagation.recurrence(perframe=mode == "perframe")  # the batch model's forward loop
        self.last_output: Tensor | None = None
        self.last_guidance: Tensor | None = None
        self._steps: dict[tuple[int, int], Tensor] = {}
        self._grid_steps: dict[tuple[int, int], Tensor] = {}
        # What the ring holds, in reused buffers: at most max(2k + 2, k + r) + 1 frames are held at once (r: reach).
        self.held = SlotRing(2 * self.k + model.config.temporal_reach + 3)
        # The HR guidance of frames t − 1 … t + k: frame t's buffer is reused when frame t + k + 2 is pushed, by
        # when frame t + 1 has been emitted (`last_guidance` is its) and t is no look-ahead frame.
        self.held_guidance = SlotRing(self.k + 2)
        self.hr_size: tuple[int, int] | None = None
        self.lr_shape: tuple[int, ...] | None = None
        self.deltas = model.neighbour_deltas(mode)
        self._push, self._step = self._push_step, self._frame_step
        if compile:
            backend = "inductor" if compile is True else compile
            self._push = torch.compile(self._push_step, backend=backend, dynamic=False)
            self._step = torch.compile(self._frame_step, backend=backend, dynamic=False)

    @torch.inference_mode()
    def push(self, feats: Tensor, frame: Tensor) -> list[Tensor]:
        """Add frame t.

        Args:
            feats: `(B, C, h, w)` features of frame t; frame: `(B, 3, H0, W0)` its RGB frame in [0, 1].
        Returns:
            the outputs `(B, C, H, W)` that became ready (0 or 1 of them).
        """
        for x, name in ((feats, "feats"), (frame, "frame")):
            if not isinstance(x, Tensor) or x.dim() != 4:
                raise ValueError(f"{name} must be one frame, a 4-D tensor (B, C, h, w), got {getattr(x, 'shape', x)!r}")
        f5, v5, _ = self.model.check_inputs(feats, frame)
        feats, frame = f5[:, 0], v5[:, 0].to(compute_dtype(self.model))  # guidance in the weights' dtype
        h, w = feats.shape[-2:]
        if self.lr_shape is None:
            self.lr_shape = tuple(feats.shape)
            video_size = (int(frame.shape[-2]), int(frame.shape[-1]))
            default = self.size is None and self.scale is None
            self.hr_size = video_size if default else output_size(h, w, scale=self.scale, size=self.size)
            check_output_size(self.hr_size, (h, w), scale=self.scale, max_pixels=self.max_pixels)
            self.video_size = video_size
            attention = self.model.attention
            self.plan = attention.plan((h, w), self.hr_size, feats.device)
            tile = default_query_tile(feats.device) if self.query_tile is None else self.query_tile
            if not isinstance(tile, bool) and isinstance(tile, int) and tile > 0:  # else the attention names it
                self.plan.blocks(feats.shape[0], tile, per_block_prior=attention.prior is not None and self.plan.classes is None)
        elif tuple(feats.shape) != self.lr_shape or tuple(frame.shape[-2:]) != self.video_size:
            raise ValueError(
                f"every pushed frame must have the shapes of the first: feats {self.lr_shape}, frame size "
                f"{self.video_size}; got {tuple(feats.shape)} and {tuple(frame.shape[-2:])}"
            )
        record = _Frame(feats, *self._push(feats, frame))
        t = self.pushed
        for name in ("feats", "descriptor", "pooled", "code", "small", "alone_keys", "fine"):
            setattr(record, name, self.held.hold(name, t, getattr(record, name)))
        record.guidance = self.held_guidance.hold("guidance", t, record.guidance)
        self.frames[t] = record
        self.pushed += 1
        ready = []
        while self.emitted + self.k < self.pushed:
            ready.append(self._emit(self.emitted, length=None))
        return ready

    def _push_step(self, feats: Tensor, frame: Tensor) -> tuple:
        """A pushed frame's own work, tensor operations only (what `compile=True` compiles).

        Args:
            feats: `(B, C, h, w)`; frame: `(B, 3, H0, W0)`.
        Returns:
            descriptor `(B, M, h, w)`, pooled guidance `(B, Cg, h, w)`, code `(B, S, h, w)`, the frame on the
            flow grid `(B, 3, fh, fw)`, HR guidance `(B, Cg, H, W)`, in look-ahead mode with future
            neighbours the keys of the frame's own state `(B, Ck, h, w)` (else None), and with the sharpness
            prior the frame at its flow size `(B, 3, H', W')` (else None).
        """
        model = self.model
        descriptor, pooled, guidance = model.describe(feats, frame, self.hr_size)
        small = resize_guidance(frame, model.flow_size(tuple(feats.shape[-2:]), self.video_size)).to(descriptor.dtype)
        code = model.code(descriptor, pooled)
        alone_keys = None
        if self.mode == "lookahead" and any(d > 0 for d in self.deltas):
            alone = model.propagation.forward_step(code, None, [], [])  # the frame's state on its own
            alone_keys = model.keys(pooled, descriptor, alone)
        fine = None
        if model.fusion is not None and model.fusion.prior_active and self.mode != "perframe":
            fine = resize_guidance(frame, model.fine_size(self.hr_size, self.video_size))
        return descriptor, pooled, code, small, guidance, alone_keys, fine

    @torch.inference_mode()
    def flush(self) -> list[Tensor]:
        """The outputs still held back (look-ahead mode), with mirrored padding at the clip's end."""
        ready = []
        while self.emitted < self.pushed:
            ready.append(self._emit(self.emitted, length=self.pushed))
        return ready

    def _grid_step(self, ref: int, supp: int) -> Tensor:
        """Flow between pushed frames `ref → supp` on the flow grid, `(B, 2, fh, fw)`, cached."""
        if (ref, supp) not in self._grid_steps:
            flow = self.model.flow(self.frames[ref].small, self.frames[supp].small)
            self._grid_steps[(ref, supp)] = self.held.hold(("grid step", supp - ref), ref, flow)
        return self._grid_steps[(ref, supp)]

    def _lr_step(self, ref: int, supp: int) -> Tensor:
        """LR flow between pushed frames `ref → supp`, `(B, 2, h, w)`, cached."""
        if (ref, supp) not in self._steps:
            flow = resize_flow(self._grid_step(ref, supp), tuple(self.lr_shape[-2:]))
            self._steps[(ref, supp)] = self.held.hold(("step", supp - ref), ref, flow)
        return self._steps[(ref, supp)]

    def _step_arguments(self, t: int, length: int | None) -> tuple:
        """What `_frame_step` needs for frame t, gathered from the ring (`length`: the clip's, once known).

        The look-ahead flows between future frames (and the forward flows of the neighbour windows) are
        computed here, outside the step, and cached: each is used by several frames.
        """
        record = self.frames[t]
        prev_small, futures, steps = None, [], []
        if self.mode != "perframe":
            if t > 0:
                prev_small = self.frames[t - 1].small
            if self.mode == "lookahead":
                index = [mirrored_index(i, length) if length is not None else i for i in range(t, t + self.k + 1)]
                futures = [self.frames[i].code for i in index[1:]]
                steps = [self._lr_step(a, b) for a, b in zip(index[:-1], index[1:])]
        states = [] if self.mode == "perframe" else list(self.loop.states)
        last = (None, None) if self.mode == "perframe" else (self.last_output, self.last_guidance)
        # frame t+1's guidance, f_{t→t+1} on the flow grid and its fine frame, for the guidance fusion
        following = (None, None, None)
        if self.mode == "lookahead" and self.model.fusion is not None and t + 1 < self.pushed:
            following = (self.frames[t + 1].guidance, self._grid_step(t, t + 1), self.frames[t + 1].fine)
        fines = (record.fine, self.frames[t - 1].fine if prev_small is not None else None)
        return (
            record.feats, record.descriptor, record.pooled, record.code, record.small, record.guidance,
            prev_small, futures, steps, states, self.loop.flow, self._neighbour_inputs(t), *last, *following, *fines,
        )

    def _emit(self, t: int, length: int | None) -> Tensor:
        """Propagate, attend and blend frame t; `length` is the clip length once known (flush)."""
        model, record = self.model, self.frames[t]
        out, state, to_prev, keys = self._step(*self._step_arguments(t, length))
        kept = zip(("state", "to_prev", "keys"), (state, to_prev, keys))
        state, to_prev, keys = (self.held.hold(kind, t, x) for kind, x in kept)
        if self.mode != "perframe":
            self.loop.record(state, to_prev)
        record.keys, record.to_prev = keys, to_prev
        self.last_output, self.last_guidance = out, record.guidance
        record.guidance = None
        self.emitted += 1
        reach = model.config.temporal_reach if self.deltas else 1
        keep = min(t - self.k - 1, t + 1 - reach)  # what mirrored padding and the neighbour windows may read
        for old in [i for i in self.frames if i < keep]:
            del self.frames[old]
        self._steps = {key: v for key, v in self._steps.items() if min(key) >= keep}
        self._grid_steps = {key: v for key, v in self._grid_steps.items() if min(key) >= keep}
        return out

    def _frame_step(
        self,
        feats: Tensor,
        descriptor: Tensor,
        pooled: Tensor,
        code: Tensor,
        small: Tensor,
        guidance: Tensor,
        prev_small: Tensor | None,
        futures: list[Tensor],
        steps: list[Tensor],
        states: list[Tensor],
        prev_flow: Tensor | None,
        neighbours: tuple | None,
        last_output: Tensor | None,
        last_guidance: Tensor | None,
        next_guidance: Tensor | None,
        next_grid_flow: Tensor | None,
        next_fine: Tensor | None,
        fine: Tensor | None,
        prev_fine: Tensor | None,
    ) -> tuple[Tensor, Tensor, Tensor | None, Tensor]:
        """One emitted frame's work, tensor operations only (what `compile=True` compiles).

        Args:
            feats `(B, C, h, w)`, descriptor, pooled, code `(B, ·, h, w)`, small `(B, 3, fh, fw)` and guidance
                `(B, Cg, H, W)`: frame t's, from `_push_step`.
            prev_small: frame t − 1 on the flow grid (None: first frame, or perframe).
            futures, steps: look-ahead codes of t+1..t+k and the LR flows between them (empty otherwise).
            states: `[s_{t−1}, s_{t−2}]` (0 to 2); prev_flow: f_{t−1→t−2} `(B, 2, h, w)` or None.
            neighbours: `_neighbour_inputs(t)`; last_output `(B, C, H, W)`, last_guidance: frame t − 1's, for
                the blend and the guidance fusion (None: first frame or perframe).
            next_guidance, next_grid_flow: frame t + 1's guidance and f_{t→t+1} `(B, 2, fh, fw)` for the guidance
                fusion (look-ahead mode with the fusion, t + 1 pushed; else None).
            next_fine, fine, prev_fine: frames t + 1, t and t − 1 at the sharpness prior's flow size (None without
                the prior, or where that frame is not read).
        Returns:
            the output `(B, C, H, W)`, the state `(B, S, h, w)`, f_{t→t−1} `(B, 2, h, w)` (or None) and the keys
            `(B, Ck, h, w)` of frame t.
        """
        model = self.model
        grid_flow, to_prev, context = None, None, None
        if prev_small is not None:
            grid_flow = model.flow(small, prev_small)  # (B, 2, fh, fw), f_{t→t−1}
            to_prev = resize_flow(grid_flow, tuple(feats.shape[-2:]))  # (B, 2, h, w)
        if futures:
            context = model.propagation.lookahead_context(code, futures, steps)
        if self.mode == "perframe":
            state = model.propagation.forward_step(code, context, [], [])
        else:
            state = advance_forward(model.propagation, code, context, states, to_prev, prev_flow)
        keys = model.keys(pooled, descriptor, state)
        candidates = None
        if neighbours is not None:
            candidates = self._candidates(feats, keys, code, to_prev, *neighbours)
        queries = guidance
        if model.fusion is not None and (last_guidance is not None or next_guidance is not None):
            def fine_flow(other: Tensor | None):  # the sharpness prior's fine flow t → other, called if needed
                return None if other is None or fine is None else lambda: resize_flow(model.flow(fine, other), self.hr_size)

            queries = model.fusion(
                guidance,
                last_guidance,
                None if last_guidance is None else resize_flow(grid_flow, self.hr_size),
                next_guidance,
                None if next_guidance is None else resize_flow(next_grid_flow, self.hr_size),
                window=energy_window(self.hr_size, tuple(feats.shape[-2:])),
                fine=(fine_flow(prev_fine), fine_flow(next_fine)),
            )
        out = feats.new_empty(*feats.shape[:2], *self.hr_size)
        model.attention(queries, keys, feats, query_tile=self.query_tile, out=out, plan=self.plan, neighbours=candidates)
        if model.blend is not None and last_output is not None:
            flow = resize_flow(grid_flow, self.hr_size)
            out = model.blend(out, last_output, flow, guidance, last_guidance)
        return out, state, to_prev, keys

    def _neighbour_inputs(self, t: int) -> tuple | None:
        """What the neighbour windows of frame t read from the ring (None: no neighbour in the clip yet).

        Returns `(present, others, back_steps, ahead_steps)`: per Δ whether t + Δ is in the clip so far, and
        its `(feats, keys, code)` (three Nones when it is not) (its own-state keys for future frames in look-ahead mode, as the batch
        model reads); the stored flows f_{t−j+1→t−j} for j ≥ 2 and the flows f_{t+j−1→t+j} (j ≥ 1) to compose.
        """
        if not self.deltas:
            return None
        present = tuple(0 <= t + d < self.pushed for d in self.deltas)
        if not any(present):
            return None
        others = []
        for delta, here in zip(self.deltas, present):
            other = self.frames[t + delta] if here else None
            if other is None:  # a tuple still: a compiled step's guards read these slots by position
                others.append((None, None, None))
            else:
                keys = other.alone_keys if self.mode == "lookahead" and delta > 0 else other.keys
                others.append((other.feats, keys, other.code))
        back = max([-d for d in self.deltas if d < 0], default=0)
        ahead = max([d for d in self.deltas if d > 0], default=0)
        back_steps = [self.frames[t - j + 1].to_prev for j in range(2, back + 1) if t - j >= 0]
        ahead_steps = [self._lr_step(t + j - 1, t + j) for j in range(1, ahead + 1) if t + j < self.pushed]
        return present, others, back_steps, ahead_steps

    def _candidates(self, feats, keys, code, to_prev, present, others, back_steps, ahead_steps):
        """Neighbour candidates of frame t (see `_neighbour_inputs`): flows t → t + Δ composed from the steps,
        window centres, tables. Neighbours outside the clip are masked out."""
        model = self.model
        flows: dict[int, Tensor] = {}
        for sign, chain in ((-1, [] if to_prev is None else [to_prev, *back_steps]), (1, ahead_steps)):
            flow = None
            for j, step in enumerate(chain, start=1):
                flow = step if flow is None else compose_flows(flow, step)
                flows[sign * j] = flow
        zero = torch.zeros_like(code[:, :2])  # (B, 2, h, w)
        values, tables, centres, codes = [], [], [], []
        for delta, other in zip(self.deltas, others):
            if other[0] is None:
                values.append(feats)
                tables.append(keys)
                centres.append(model.temporal.centre(code, code, zero, 0))
                codes.append(code)
                continue
            values.append(other[0])
            tables.append(other[1])
            centres.append(model.temporal.centre(code, other[2], flows[delta], delta))
            codes.append(other[2])
        b, d = feats.shape[0], len(self.deltas)
        rows = torch.arange(b * d, device=feats.device).view(b, d)  # row n·D + d of the tables
        present = torch.tensor(present, device=rows.device)[None].expand(b, d)
        centres = torch.stack(centres, dim=1)  # (B, D, 2, h, w)
        cell_bias = None
        if model.temporal.agreement is not None:
            cell_bias = model.temporal.agreement(code, torch.stack(codes, dim=1), centres, self.deltas, present)
        return model.temporal.candidates(
            torch.stack(tables, dim=1).flatten(0, 1),  # (B·D, Ck, h, w)
            torch.stack(values, dim=1).flatten(0, 1),  # (B·D, C, h, w)
            rows,
            rows,
            centres,
            self.deltas,
            present,
            cell_bias,
        )
