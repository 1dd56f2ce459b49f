"""Attention probabilities `softmax(q·kᵀ/√d + bias)` from interchangeable kernels (DESIGN.md §5.3).

VideoAnyUp averages the attention weights over heads *before* they multiply the raw C-channel values,
so that the output is one convex combination of input vectors and the value product is paid once, not
once per head. The backends therefore return the per-head probabilities. `scaled_dot_product_attention`
yields them when its values are the identity over the keys (`softmax(·) @ I = softmax(·)`); the identity
is padded to a multiple of 8 columns, which the fused CUDA kernels want.

Backends:
- "sdpa" (default): `torch.nn.functional.scaled_dot_product_attention` (a fused kernel on CUDA); on the CPU,
  where torch runs a float mask through the same decomposition as "math" plus the product with the
  identity, the explicit product is used instead (the same probabilities to float rounding, fewer
  operations and about a third of the arithmetic);
- "math": the explicit product, softmax in plain PyTorch (the reference);
- "xformers": `xformers.ops.memory_efficient_attention`, CUDA only, optional import.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

BACKENDS = ("sdpa", "math", "xformers")


def check_backend(backend: str) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    return backend


def _identity_values(keys: int, like: Tensor) -> Tensor:
    """`(keys, ⌈keys/8⌉·8)` identity, so `probabilities @ I` returns the probabilities (padded)."""
    width = math.ceil(keys / 8) * 8
    return torch.eye(keys, width, device=like.device, dtype=like.dtype)


def _math(q: Tensor, k: Tensor, bias: Tensor) -> Tensor:
    logits = torch.matmul(q, k.transpose(-1, -2)) * (q.shape[-1] ** -0.5)  # (..., L, S)
    return (logits + bias).softmax(dim=-1)


def _sdpa(q: Tensor, k: Tensor, bias: Tensor) -> Tensor:
    s = k.shape[-2]
    eye = _identity_values(s, q).expand(*k.shape[:-2], s, -1)  # (..., S, S8), no copy
    out = F.scaled_dot_product_attention(q, k, eye, attn_mask=bias.to(q.dtype))  # (..., L, S8)
    return out[..., :s]


def _xformers(q: Tensor, k: Tensor, bias: Tensor) -> Tensor:
    try:
        from xformers.ops import memory_efficient_attention
    except ImportError as error:  # pragma: no cover - optional dependency
        raise ImportError('backend="xformers" needs the xformers package (pip install xformers)') from error
    if q.device.type != "cuda":
        raise ValueError('backend="xformers" runs on CUDA tensors only; use backend="sdpa" on this device')
    *lead, heads, length, dim = q.shape  # pragma: no cover - needs CUDA
    s = k.shape[-2]
    batch = math.prod(lead)
    eye = _identity_values(s, q)
    # xformers takes (batch, sequence, heads, dim) and a bias whose last dim is padded to 8.
    qx = q.reshape(batch, heads, length, dim).transpose(1, 2)
    kx = k.reshape(batch, heads, s, dim).transpose(1, 2)
    vx = eye.expand(batch, heads, s, eye.shape[-1]).transpose(1, 2)
    bias_full = bias.to(q.dtype).expand(*lead, heads, length, s).reshape(batch, heads, length, s)
    padded = bias_full.new_zeros(batch, heads, length, eye.shape[-1])[..., :s]
    padded.copy_(bias_full)
    out = memory_efficient_attention(qx, kx, vx.contiguous(), attn_bias=padded)  # (batch, L, heads, S8)
    return out.transpose(1, 2).reshape(*lead, heads, length, -1)[..., :s]


def attention_probabilities(q: Tensor, k: Tensor, bias: Tensor, *, backend: str = "sdpa") -> Tensor:
    """Per-head attention probabilities.

    Args:
        q: `(..., heads, L, d)` queries.
        k: `(..., heads, S, d)` keys.
        bias: additive logit bias broadcastable to `(..., heads, L, S)` (−inf masks a key out; every row
            must keep at least one finite entry).
        backend: one of `BACKENDS`.
    Returns:
        `(..., heads, L, S)`, each row sums to one.
    """
    backend = check_backend(backend)
    if backend == "math" or (backend == "sdpa" and q.device.type == "cpu"):
        return _math(q, k, bias)
    if backend == "sdpa":
        return _sdpa(q, k, bias)
    return _xformers(q, k, bias)
