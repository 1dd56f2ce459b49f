"""Fast row/column gathers of 2-D maps.

`index_select` along dim 1 of a contiguous 3-D tensor is torch's fast path (a block copy per index);
gathering along the last dim of a 4-D tensor is an order of magnitude slower on the CPU. Both gathers here
go through dim 1, with one transpose in between.
"""

from __future__ import annotations

from torch import Tensor


def gather_rows(x: Tensor, rows: Tensor) -> Tensor:
    """`(M, A, B)` → `(M, len(rows), B)`, `out[:, i] = x[:, rows[i]]`."""
    return x.index_select(1, rows)


def transpose_maps(x: Tensor) -> Tensor:
    """`(M, A, B)` → contiguous `(M, B, A)`."""
    return x.transpose(1, 2).contiguous()


def gather_grid(x: Tensor, rows: Tensor, cols: Tensor) -> Tensor:
    """`(M, A, B)` → `(M, len(rows), len(cols))`, `out[:, i, j] = x[:, rows[i], cols[j]]`."""
    picked = transpose_maps(gather_rows(x, rows))  # (M, B, th)
    return transpose_maps(gather_rows(picked, cols))  # (M, th, tw)
