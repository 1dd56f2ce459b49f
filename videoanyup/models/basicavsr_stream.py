"""Online BasicAVSR: push LR frames one at a time, receive HR frames as soon as they are ready.

The stream runs the same steps as `BasicAVSR.forward` in "unidirectional" or "lookahead" mode and keeps
only what the next steps need — the last two states, the last flow, and (look-ahead) the last k + 1 frames
and their features — so its memory does not grow with the number of frames. In look-ahead mode output t
is returned when frame t + k arrives; `flush()` finishes the clip with mirrored padding.
"""

from __future__ import annotations

from collections import deque
from typing import Sequence

import torch
from torch import Tensor

from videoanyup.functional.grid import output_size
from videoanyup.functional.temporal import lookahead_window
from videoanyup.layers.feature_propagation import advance_forward
from videoanyup.validation import MAX_OUTPUT_PIXELS, check_finite, check_output_size, check_tensor, check_unit_range, compute_dtype


class BasicAVSRStream:
    """Frame-by-frame upscaling with a fixed memory footprint.

    Args:
        model: a `BasicAVSR`.
        scale / size: as in `BasicAVSR.forward` (exactly one).
        mode: "unidirectional" or "lookahead" (default: `model.default_stream_mode()`).
        compile: run each frame's step (flow to the previous frame, look-ahead context, recurrent step,
            upsampler) and the feature extraction through `torch.compile` (True: the default backend,
            inductor; or a backend's name). The step traces as one graph: the upsampler's grid, kernels and
            indices are made before it (`HyperUpsampler.prepare`). The first frames compile (the first two
            have fewer previous states, so three variants); a stream keeps its shapes, so nothing recompiles.
    """

    def __init__(
        self,
        model,
        *,
        scale: float | Sequence[float] | None = None,
        size: Sequence[int] | None = None,
        mode: str | None = None,
        compile: bool | str = False,
        max_pixels: int = MAX_OUTPUT_PIXELS,
    ) -> None:
        self.max_pixels = max_pixels  # the most pixels an output frame may have (`validation.check_output_size`)
        mode = model.check_mode(model.default_stream_mode() if mode is None else mode)
        if mode not in model.stream_modes:
            raise ValueError(f"mode={mode!r} cannot stream: use 'unidirectional' or 'lookahead' (bidirectional needs the whole clip)")
        if (scale is None) == (size is None):
            raise ValueError(f"give exactly one of scale and size, got scale={scale!r}, size={size!r}")
        self.model, self.mode, self.scale, self.size = model, mode, scale, size
        self.k = model.config.lookahead if mode == "lookahead" else 0
        self.hr_size: tuple[int, int] | None = None
        self.lr_shape: tuple[int, ...] | None = None
        self.frames: deque[Tensor] = deque(maxlen=self.k + 1)  # the last k+1 LR frames (look-ahead window)
        self.feats: deque[Tensor] = deque(maxlen=self.k + 1)
        self.steps: deque[Tensor] = deque(maxlen=self.k)  # flows frame j → j+1 inside the window
        self.loop = model.propagation.recurrence()  # g_{t−1}, g_{t−2}, f_{t−1→t−2}: the batch model's loop
        self.prev_frame: Tensor | None = None  # LR frame t−1 of the forward branch
        self.pushed = 0  # frames received
        self.emitted = 0  # HR frames returned
        if not isinstance(compile, (bool, str)):
            raise ValueError(f"compile must be True, False or a torch.compile backend name, got {compile!r}")
        self._upsampler_inputs = None  # (plan, tables) of the stream's grid, made with the first frame
        self._step, self._extract = self._frame_step, model.extract
        if compile:
            backend = "inductor" if compile is True else compile
            self._step = torch.compile(self._frame_step, backend=backend, dynamic=False)
            self._extract = torch.compile(model.extract, backend=backend, dynamic=False)

    def _check_frame(self, frame: Tensor) -> Tensor:
        frame = check_tensor(frame, "frame")
        if frame.dim() != 4 or frame.shape[1] != 3 or min(frame.shape) == 0:
            raise ValueError(f"frame must have shape (B, 3, h, w), got {tuple(frame.shape)}")
        if self.lr_shape is not None and tuple(frame.shape) != self.lr_shape:
            raise ValueError(f"frame must keep the stream's shape {self.lr_shape}, got {tuple(frame.shape)}")
        check_finite(frame, "frame")
        check_unit_range(frame, "frame")
        if self.lr_shape is None:
            self.lr_shape, self.out_dtype = tuple(frame.shape), frame.dtype
            self.hr_size = output_size(*frame.shape[-2:], scale=self.scale, size=self.size)
            check_output_size(self.hr_size, tuple(frame.shape[-2:]), scale=self.scale, max_pixels=self.max_pixels)
        return frame.to(compute_dtype(self.model))  # float64 / float16 in: computed in the weights' dtype

    @torch.no_grad()
    def push(self, frame: Tensor) -> list[Tensor]:
        """Add LR frame `(B, 3, h, w)`; returns the HR frames `(B, 3, H, W)` that became ready (0 or 1)."""
        frame = self._check_frame(frame)
        model = self.model
        if self.k and self.frames:  # only the look-ahead window keeps these flows
            self.steps.append(model.spynet(self.frames[-1], frame))  # f_{j→j+1}
        self.frames.append(frame)
        self.feats.append(self._extract(frame))
        self.pushed += 1
        if self.pushed <= self.k:
            return []
        return [self._emit(list(self.frames), list(self.feats), list(self.steps))]

    @torch.no_grad()
    def flush(self) -> list[Tensor]:
        """Finish the clip: the HR frames still waiting for look-ahead frames, with mirrored padding."""
        out = []
        total = self.pushed
        history = list(self.frames)
        history_feats = list(self.feats)
        first = total - len(history)  # clip index of history[0]
        while self.emitted < total:
            t = self.emitted
            window = [i - first for i in lookahead_window(t, self.k, total)]
            frames = [history[i] for i in window]
            feats = [history_feats[i] for i in window]
            steps = [self.model.spynet(frames[j], frames[j + 1]) for j in range(self.k)]
            out.append(self._emit(frames, feats, steps))
        self.frames.clear()
        self.feats.clear()
        self.steps.clear()
        return out

    def _emit(self, frames: list[Tensor], feats: list[Tensor], steps: list[Tensor]) -> Tensor:
        """Run the forward branch for frame t = frames[0] and upsample it."""
        if self._upsampler_inputs is None:
            self._upsampler_inputs = self.model.upsampler.prepare(frames[0], self.hr_size)
        loop = self.loop
        state, flow, hr = self._step(frames[0], feats, steps, loop.states, self.prev_frame, loop.flow, self._upsampler_inputs[1])
        loop.record(state, flow)
        self.prev_frame = frames[0]
        self.emitted += 1
        return hr.to(self.out_dtype)

    def _frame_step(
        self,
        frame: Tensor,
        feats: list[Tensor],
        steps: list[Tensor],
        prev_states: list[Tensor],
        prev_frame: Tensor | None,
        prev_flow: Tensor | None,
        tables: tuple[Tensor, Tensor] | None,
    ) -> tuple[Tensor, Tensor | None, Tensor]:
        """One frame's work, tensor operations only (what `compile=True` compiles).

        Args:
            frame: `(B, 3, h, w)` LR frame t; feats: k + 1 features `(B, C, h, w)` of frames t..t+k; steps: k
                flows `(B, 2, h, w)` between them; prev_states: `g_{t−1}`, `g_{t−2}` (0 to 2); prev_frame: frame
                t − 1; prev_flow: f_{t−1→t−2}; tables: the upsampler's kernel tables (`prepare`).
        Returns:
            `g_t` `(B, C, h, w)`, f_{t→t−1} `(B, 2, h, w)` (None on the first frame), the HR frame `(B, 3, H, W)`.
        """
        model = self.model
        feat = feats[0]
        context = model.propagation.lookahead_context(feat, feats[1:], steps) if self.mode == "lookahead" else None
        flow = model.spynet(frame, prev_frame) if prev_states else None  # f_{t→t−1}
        state = advance_forward(model.propagation, feat, context, prev_states, flow, prev_flow)
        upsampler = model.upsampler
        plan = self._upsampler_inputs[0]
        hr = upsampler.render(upsampler.blocks(state), frame, plan, (0, plan.hr_size[0], 0, plan.hr_size[1]), tables)
        return state, flow, hr

    def state_numel(self) -> int:
        """Number of tensor elements the stream holds (constant once the window is full)."""
        held = [*self.frames, *self.feats, *self.steps, *self.loop.states]
        held += [t for t in (self.loop.flow, self.prev_frame) if t is not None]
        return sum(t.numel() for t in held)
