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
keys, features and flows (t − r … t + k), never the whole clip: its memory does not grow with T.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor

from videoanyup.functional.grid import output_size
from videoanyup.functional.temporal import mirrored_index
from videoanyup.functional.warp import compose_flows, resize_flow
from videoanyup.layers.guidance_encoder import resize_guidance
from videoanyup.validation import compute_dtype


@dataclass
class _Frame:
    """What the stream keeps of one pushed frame (batch B)."""

    feats: Tensor  # (B, C, h, w)
    descriptor: Tensor  # (B, M, h, w)
    pooled: Tensor  # (B, Cg, h, w)
    code: Tensor  # (B, S, h, w)
    small: Tensor  # (B, 3, fh, fw) frame on the flow grid
    guidance: Tensor | None  # (B, Cg, H, W), dropped once the frame is out
    alone_keys: Tensor | None = None  # (B, Ck, h, w) keys from the frame's own state (look-ahead neighbours)
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
    """

    def __init__(
        self,
        model,
        *,
        size: Sequence[int] | None = None,
        scale: float | Sequence[float] | None = None,
        mode: str | None = None,
        query_tile: int | None = None,
    ) -> None:
        mode = model.check_mode(default_stream_mode(model) if mode is None else mode)
        if mode == "bidirectional":
            raise ValueError(
                'mode="bidirectional" needs the whole clip; stream "unidirectional", "lookahead" or "perframe"'
            )
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
        self.hr_size: tuple[int, int] | None = None
        self.lr_shape: tuple[int, ...] | None = None

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
            self.video_size = video_size
            self.plan = self.model.attention.plan((h, w), self.hr_size, feats.device)
        elif tuple(feats.shape) != self.lr_shape or tuple(frame.shape[-2:]) != self.video_size:
            raise ValueError(
                f"every pushed frame must have the shapes of the first: feats {self.lr_shape}, frame size "
                f"{self.video_size}; got {tuple(feats.shape)} and {tuple(frame.shape[-2:])}"
            )
        model = self.model
        descriptor, pooled, guidance = model.describe(feats, frame, self.hr_size)
        small = resize_guidance(frame, model.flow_size((h, w), self.video_size)).to(descriptor.dtype)
        code = model.code(descriptor, pooled)
        record = _Frame(feats, descriptor, pooled, code, small, guidance)
        if self.mode == "lookahead" and any(d > 0 for d in model.neighbour_deltas(self.mode)):
            alone = model.propagation.forward_step(code, None, [], [])  # the frame's state on its own
            record.alone_keys = model.keys(pooled, descriptor, alone)
        self.frames[self.pushed] = record
        self.pushed += 1
        ready = []
        while self.emitted + self.k < self.pushed:
            ready.append(self._emit(self.emitted, length=None))
        return ready

    @torch.inference_mode()
    def flush(self) -> list[Tensor]:
        """The outputs still held back (look-ahead mode), with mirrored padding at the clip's end."""
        ready = []
        while self.emitted < self.pushed:
            ready.append(self._emit(self.emitted, length=self.pushed))
        return ready

    def _lr_step(self, ref: int, supp: int) -> Tensor:
        """LR flow between pushed frames `ref → supp`, `(B, 2, h, w)`, cached."""
        if (ref, supp) not in self._steps:
            flow = self.model.flow(self.frames[ref].small, self.frames[supp].small)  # (B, 2, fh, fw)
            self._steps[(ref, supp)] = resize_flow(flow, tuple(self.lr_shape[-2:]))
        return self._steps[(ref, supp)]

    def _emit(self, t: int, length: int | None) -> Tensor:
        """Propagate, attend and blend frame t; `length` is the clip length once known (flush)."""
        model, record = self.model, self.frames[t]
        context, grid_flow, to_prev = None, None, None
        if self.mode != "perframe":
            if t > 0:
                grid_flow = model.flow(record.small, self.frames[t - 1].small)  # (B, 2, fh, fw), f_{t→t−1}
                to_prev = resize_flow(grid_flow, tuple(self.lr_shape[-2:]))  # (B, 2, h, w), f_{t→t−1}
            if self.mode == "lookahead":
                index = [mirrored_index(i, length) if length is not None else i for i in range(t, t + self.k + 1)]
                futures = [self.frames[i].code for i in index[1:]]
                steps = [self._lr_step(a, b) for a, b in zip(index[:-1], index[1:])]
                context = model.propagation.lookahead_context(record.code, futures, steps)
        state = self.loop.step(record.code, context, to_prev)
        keys = model.keys(record.pooled, record.descriptor, state)
        record.keys = keys
        record.to_prev = to_prev
        b, c = record.feats.shape[:2]
        out = record.feats.new_empty(b, c, *self.hr_size)
        model.attention(
            record.guidance, keys, record.feats, query_tile=self.query_tile, out=out, plan=self.plan,
            neighbours=self._neighbours(t),
        )
        if model.blend is not None and self.mode != "perframe" and self.last_output is not None:
            flow = resize_flow(grid_flow, self.hr_size)
            out = model.blend(out, self.last_output, flow, record.guidance, self.last_guidance)
        self.last_output, self.last_guidance = out, record.guidance
        record.guidance = None
        self.emitted += 1
        reach = model.config.temporal_reach if model.neighbour_deltas(self.mode) else 1
        keep = min(t - self.k - 1, t + 1 - reach)  # what mirrored padding and the neighbour windows may read
        for old in [i for i in self.frames if i < keep]:
            del self.frames[old]
        self._steps = {key: v for key, v in self._steps.items() if min(key) >= keep}
        return out

    def _neighbours(self, t: int):
        """The neighbour-window candidates of frame t (None without spatio-temporal attention).

        Reads only the ring: frames t − r … t + k, their keys (their own-state keys for future frames in
        look-ahead mode, as the batch model does) and the flows between them. Neighbours outside the clip
        (before frame 0, or past the last frame once `flush` knows it) are masked out.
        """
        model = self.model
        deltas = model.neighbour_deltas(self.mode)
        if not deltas:
            return None
        record = self.frames[t]
        b = record.feats.shape[0]
        present = [0 <= t + d < self.pushed for d in deltas]
        if not any(present):
            return None
        zero = torch.zeros_like(record.code[:, :2])  # (B, 2, h, w)
        flows: dict[int, Tensor] = {}
        for sign in (-1, 1):
            flow = None
            for j in range(1, max([abs(d) for d in deltas if d * sign > 0], default=0) + 1):
                if not 0 <= t + sign * j < self.pushed:
                    break
                if sign < 0:
                    step = self.frames[t - j + 1].to_prev  # f_{t−j+1→t−j}
                else:
                    step = self._lr_step(t + j - 1, t + j)  # f_{t+j−1→t+j}
                flow = step if flow is None else compose_flows(flow, step)
                flows[sign * j] = flow
        values, keys, centres = [], [], []
        for delta, here in zip(deltas, present):
            if not here:
                values.append(record.feats)
                keys.append(record.keys)
                centres.append(model.temporal.centre(record.code, record.code, zero, 0))
                continue
            other = self.frames[t + delta]
            values.append(other.feats)
            keys.append(other.alone_keys if self.mode == "lookahead" and delta > 0 else other.keys)
            centres.append(model.temporal.centre(record.code, other.code, flows[delta], delta))
        d = len(deltas)
        rows = torch.arange(b * d, device=record.feats.device).view(b, d)  # row n·D + d of the tables
        return model.temporal.candidates(
            torch.stack(keys, dim=1).flatten(0, 1),  # (B·D, Ck, h, w)
            torch.stack(values, dim=1).flatten(0, 1),  # (B·D, C, h, w)
            rows,
            rows,
            torch.stack(centres, dim=1),  # (B, D, 2, h, w)
            deltas,
            torch.tensor(present, device=rows.device)[None].expand(b, d),
        )
