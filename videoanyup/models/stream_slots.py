"""Buffers a stream reuses for what it holds across frames.

A stream keeps some tensors of each frame for a few frames (its ring: LR features, keys, codes, states, flows,
HR guidance) and frees the rest within the frame. If the kept tensors are fresh allocations, glibc places them
between the frame's large temporaries, and the heap fragments a little more with each frame: the peak memory of
a stream crept up by ~10 % over its first ~15 frames before it settled. Copied into buffers made once, with the
first frames, the kept tensors stay in the same blocks, every frame frees and allocates the same temporaries, and
the peak is flat in T.
"""

from __future__ import annotations

import torch
from torch import Tensor


class SlotRing:
    """`length` reusable buffers per kind of kept tensor; frame t's goes to buffer t mod `length`.

    The caller guarantees that a frame's tensor of a kind is no longer read once frame t + `length` stores one of
    the same kind (the stream-equals-batch tests are the guard).
    """

    def __init__(self, length: int) -> None:
        if length < 1:
            raise ValueError(f"length must be >= 1, got {length}")
        self.length = length
        self.buffers: dict[tuple, list[Tensor | None]] = {}

    def hold(self, kind: object, t: int, x: Tensor | None) -> Tensor | None:
        """A copy of `x` (any shape) in its buffer for frame t (None stays None)."""
        if x is None:
            return None
        ring = self.buffers.setdefault((kind, tuple(x.shape), x.dtype, x.device), [None] * self.length)
        slot = t % self.length
        if ring[slot] is None:
            ring[slot] = torch.empty(x.shape, dtype=x.dtype, device=x.device)
        return ring[slot].copy_(x)

    def data_ptrs(self) -> set[int]:
        """Addresses of every buffer made so far (tests: what a stream holds lives here)."""
        return {b.data_ptr() for ring in self.buffers.values() for b in ring if b is not None}
