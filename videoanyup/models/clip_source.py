"""A whole clip as a `FrameSource` (`frame_step.py`): the LR steps of VideoAnyUp run once for the clip, and the
HR guidance is kept or recomputed per frame.

`prepare_clip` runs the method's steps 1–2 on the LR grid (descriptors, codes, flows, shot gates, propagated
states, keys) for all frames at once; `ClipSource` then answers `frame_step`'s questions with views of those
tensors. Memory handling lives here: the HR guidance of every frame is kept when the caller allows it (one
chunk holds the whole clip), else computed again for the few frames a step reads (t − 1, t, t + 1), so the HR
memory is that of three frames whatever T.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from einops import rearrange
from torch import Tensor

from videoanyup.functional.temporal import padded_indices
from videoanyup.functional.warp import resize_flow
from videoanyup.layers.frame_cues import FrameStructure, frame_structure
from videoanyup.layers.guidance_encoder import resize_guidance
from videoanyup.models.frame_step import FrameRecord, pair_log_gates


def fold(x: Tensor) -> Tensor:
    """`(B, T, ·, h, w)` → `(B·T, ·, h, w)`."""
    return rearrange(x, "b t c h w -> (b t) c h w")


def unfold(x: Tensor, b: int) -> Tensor:
    """`(B·T, ·, h, w)` → `(B, T, ·, h, w)`."""
    return rearrange(x, "(b t) c h w -> b t c h w", b=b)


@dataclass
class PreparedClip:
    """The LR quantities of a clip (B clips of T frames), from `prepare_clip`.

    Attributes:
        feats: `(B, T, C, h, w)`; codes: `(B, T, S, h, w)`; keys, alone_keys: `(B, T, Ck, h, w)` (alone_keys:
            look-ahead mode with neighbour windows, else None).
        structure: `FrameStructure` with `(B·T, …)` tensors (frame-major within each clip).
        to_prev, to_next: `(B, T − 1, 2, h, w)` LR flows t → t − 1 (t ≥ 1) and t → t + 1 (t ≤ T − 2), None
            where the mode reads none; grid_prev, grid_next: the same on the flow grid `(B, T − 1, 2, fh, fw)`.
        log_gates: `(B, T − 1)` log p of the shot test of each pair (t, t + 1), or None (perframe, T = 1).
        guidance: `(B, T, Cg, H, W)` kept HR guidance, or None (recomputed per frame).
    """

    feats: Tensor
    codes: Tensor
    keys: Tensor
    alone_keys: Tensor | None
    structure: FrameStructure
    to_prev: Tensor | None
    to_next: Tensor | None
    grid_prev: Tensor | None
    grid_next: Tensor | None
    log_gates: Tensor | None
    guidance: Tensor | None


def prepare_clip(model, feats: Tensor, video: Tensor, mode: str, hr_size: tuple[int, int], *, chunk: int) -> PreparedClip:
    """Steps 1–2 of the method for checked `(B, T, C, h, w)` features and `(B, T, 3, H0, W0)` video; the HR
    guidance is made `chunk` frames at a time, and kept when one chunk holds the whole clip."""
    b, t, _, h, w = feats.shape
    video_size = (int(video.shape[-2]), int(video.shape[-1]))
    # 1. Per frame: the agnostic descriptor, the guidance at the output grid pooled to the LR grid, the code; the
    #    frame on the flow grid and its contrast-normalised structure.
    parts = [model.describe(fold(feats[:, t0 : t0 + chunk]), fold(video[:, t0 : t0 + chunk]), hr_size) for t0 in range(0, t, chunk)]
    descriptor = fold(torch.cat([unfold(d, b) for d, _, _ in parts], dim=1))  # (B·T, M, h, w)
    pooled = fold(torch.cat([unfold(p, b) for _, p, _ in parts], dim=1))  # (B·T, Cg, h, w)
    kept = unfold(parts[0][2], b) if len(parts) == 1 else None  # (B, T, Cg, H, W)
    del parts
    codes = model.code(descriptor, pooled)  # (B·T, S, h, w)
    small = resize_guidance(fold(video), model.flow_size((h, w), video_size)).to(descriptor.dtype)  # (B·T, 3, fh, fw)
    structure = frame_structure(small, (h, w))

    # 2. Flows between consecutive frames (on the flow grid, resized to the LR grid), the shot test of each pair,
    #    the state propagated in the mode, the keys.
    flows = clip_flows(model, unfold(small, b), mode, (h, w))
    log_gates = None
    if flows["to_prev"] is not None:
        log_gates = clip_log_gates(model, structure, b, flows["to_prev"])
    states = model.propagation(
        unfold(codes, b),
        mode=mode,
        flows_to_prev=flows["to_prev"],
        flows_to_next=flows["to_next"],
        lookahead_steps=flows["steps"],
        pair_gates=None if log_gates is None else log_gates.exp(),
    )  # (B, T, S, h, w)
    keys = model.keys(pooled, descriptor, fold(states))  # (B·T, Ck, h, w)
    alone_keys = None
    if mode == "lookahead" and any(d > 0 for d in model.neighbour_deltas(mode)):
        alone = model.propagation(unfold(codes, b), mode="perframe")  # the state of each frame on its own
        alone_keys = unfold(model.keys(pooled, descriptor, fold(alone)), b)
    to_next, grid_next = flows["to_next"], flows["grid_next"]
    return PreparedClip(
        feats, unfold(codes, b), unfold(keys, b), alone_keys, structure, flows["to_prev"], to_next,
        flows["grid_prev"], grid_next, log_gates, kept,
    )


def clip_log_gates(model, structure: FrameStructure, b: int, to_prev: Tensor) -> Tensor:
    """`(B, T − 1)` log p of the pairs (t − 1, t) from the `(B·T, …)` structure and the LR flows t → t − 1
    `(B, T − 1, 2, h, w)`."""
    t = to_prev.shape[1] + 1

    def pick(x: Tensor, frames: slice) -> Tensor:  # (B·T, …) → (B·(T − 1), …), the frames of each clip
        return x.view(b, t, *x.shape[1:])[:, frames].flatten(0, 1)

    later, earlier = slice(1, t), slice(0, t - 1)
    own = FrameStructure(*(pick(x, later) for x in structure.tensors()))
    other = FrameStructure(*(pick(x, earlier) for x in structure.tensors()))
    return pair_log_gates(model, own, other, fold(to_prev)).view(b, t - 1)


def clip_flows(model, small: Tensor, mode: str, lr_size: tuple[int, int]) -> dict[str, Tensor | None]:
    """The flows a mode needs, from flow-grid frames `(B, T, 3, fh, fw)`.

    Returns "to_prev" / "grid_prev" (f_{t→t−1}, t ≥ 1) and "to_next" / "grid_next" (f_{t→t+1}, t ≤ T − 2; read in
    bidirectional and look-ahead mode), `(B, T − 1, 2, ·)` on the LR and the flow grid, and "steps", the LR flows
    between consecutive frames of the mirrored-padded clip `(B, T + k − 1, 2, h, w)` (look-ahead mode). None where
    the mode needs none.
    """
    b, t = small.shape[:2]

    def run(ref_index: list[int], supp_index: list[int]) -> Tensor:
        return unfold(model.flow(fold(small[:, ref_index]), fold(small[:, supp_index])), b)  # (B, T', 2, fh, fw)

    def to_lr(flow: Tensor) -> Tensor:
        return unfold(resize_flow(fold(flow), lr_size), b)

    result: dict[str, Tensor | None] = dict.fromkeys(("to_prev", "to_next", "steps", "grid_prev", "grid_next"))
    if mode == "perframe":
        return result
    if t > 1:
        result["grid_prev"] = run(list(range(1, t)), list(range(t - 1)))
        result["to_prev"] = to_lr(result["grid_prev"])
    if mode == "bidirectional" and t > 1:
        result["grid_next"] = run(list(range(t - 1)), list(range(1, t)))
        result["to_next"] = to_lr(result["grid_next"])
    if mode == "lookahead":
        padded = padded_indices(t, model.config.lookahead)
        grid_steps = run(padded[:-1], padded[1:])  # (B, T + k − 1, 2, fh, fw); the first T − 1 are f_{t→t+1}
        result["steps"] = to_lr(grid_steps)
        if t > 1:
            result["grid_next"] = grid_steps[:, : t - 1]
            result["to_next"] = result["steps"][:, : t - 1]
    return result


class ClipSource:
    """A prepared clip as a `FrameSource`; the HR guidance of frames not kept is computed on demand and held for
    the frames a step may still read (t − 1 … t + 1)."""

    def __init__(self, model, clip: PreparedClip, video: Tensor, hr_size: tuple[int, int]) -> None:
        self.model, self.clip, self.video, self.hr_size = model, clip, video, hr_size
        self.length = clip.feats.shape[1]
        self._guidance: dict[int, Tensor] = {}

    def known(self, i: int) -> bool:
        return 0 <= i < self.length

    def record(self, i: int) -> FrameRecord:
        c = self.clip
        b = c.feats.shape[0]
        structure = FrameStructure(*(x.view(b, self.length, *x.shape[1:])[:, i] for x in c.structure.tensors()))
        alone = None if c.alone_keys is None else c.alone_keys[:, i]
        return FrameRecord(c.feats[:, i], c.codes[:, i], c.keys[:, i], alone, structure)

    def step_flow(self, a: int, b: int) -> Tensor:
        return self.clip.to_prev[:, a - 1] if b == a - 1 else self.clip.to_next[:, a]

    def step_grid_flow(self, a: int, b: int) -> Tensor:
        return self.clip.grid_prev[:, a - 1] if b == a - 1 else self.clip.grid_next[:, a]

    def step_log_gate(self, a: int, b: int) -> Tensor:
        return self.clip.log_gates[:, min(a, b)]

    def guidance(self, i: int) -> Tensor:
        if self.clip.guidance is not None:
            return self.clip.guidance[:, i]
        if i not in self._guidance:
            frames = resize_guidance(self.video[:, i], self.hr_size)
            self._guidance[i] = self.model.guidance(frames)  # (B, Cg, H, W)
        return self._guidance[i]

    def release_before(self, i: int) -> None:
        """Forget the recomputed guidance of frames before i (no later step reads them)."""
        for j in [j for j in self._guidance if j < i]:
            del self._guidance[j]
