"""A linear (1×1 convolution) probe on upsampled features, trained on pixels sampled per frame.

Holding every upsampled feature map of a set would not fit in memory (224 × 392 px × 384 channels × 80
frames ≈ 11 GB), so training uses `pixels` sampled per frame — the same locations for every upsampler
(`sample_pixels` depends only on the seed, the sequence and the frame) — and only the sampled vectors are
kept. The probe standardises its input with the training set's per-channel mean and std, then applies
one linear layer; it is trained full-batch with Adam for a fixed number of steps, so the same seed,
steps and learning rate give the same probe for every upsampler.

Tasks: "classify" (cross-entropy over K classes; predictions are class probabilities) and "regress"
(one output, mean squared error; the depth probe regresses log-depth).

Stratified sampling trains the classifier as if the classes were equally frequent; `correct_prior` moves its
biases back to the classes' real frequencies (the case-control correction: add log p_true(k) − log
p_sampled(k) to class k's logit), so that the argmax is the Bayes decision for the frames it will see rather
than for a 50 / 50 world (which over-predicts a foreground that covers 10 % of a frame).
"""

from __future__ import annotations

import zlib

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn


def sample_pixels(
    labels: Tensor | None, size: tuple[int, int], count: int, *, seed: int, key: str, valid: Tensor | None = None
) -> Tensor:
    """Flat indices `(n,)` of pixels of an `(H, W)` frame to train on, fixed by `seed` and `key`.

    With `labels` `(H, W)` (classification) the classes present share the count equally (stratified
    sampling, so small objects are not drowned by background); without, pixels are drawn uniformly among
    `valid` ones (all by default). Fewer than `count` come back when the frame has fewer pixels.
    """
    generator = np.random.default_rng([seed, zlib.crc32(key.encode())])
    height, width = size
    if labels is None:
        pool = np.arange(height * width) if valid is None else np.flatnonzero(valid.reshape(-1).numpy())
        take = min(count, len(pool))
        return torch.from_numpy(np.sort(generator.choice(pool, size=take, replace=False)))
    flat = labels.reshape(-1).numpy()
    classes = np.unique(flat)
    per_class = max(1, count // len(classes))
    chosen = []
    for cls in classes:
        pool = np.flatnonzero(flat == cls)
        chosen.append(generator.choice(pool, size=min(per_class, len(pool)), replace=False))
    return torch.from_numpy(np.sort(np.concatenate(chosen)))


class LinearProbe(nn.Module):
    """Standardisation + one linear map: `(N, C)` vectors or `(T, C, H, W)` maps → `K` outputs.

    Args:
        channels: C; outputs: K (classes, or 1 for regression).
    """

    def __init__(self, channels: int, outputs: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(channels))
        self.register_buffer("std", torch.ones(channels))
        self.linear = nn.Linear(channels, outputs)

    def forward(self, x: Tensor) -> Tensor:
        """`(N, C)` → `(N, K)`."""
        return self.linear((x - self.mean) / self.std)

    def apply_map(self, feats: Tensor) -> Tensor:
        """A 1×1 convolution over `(T, C, H, W)` maps → `(T, K, H, W)`."""
        t, _, h, w = feats.shape
        flat = rearrange(feats, "t c h w -> (t h w) c")
        return rearrange(self(flat), "(t h w) k -> t k h w", t=t, h=h, w=w)


def train_probe(
    x: Tensor,
    y: Tensor,
    *,
    outputs: int,
    task: str = "classify",
    steps: int = 300,
    lr: float = 1e-2,
    weight_decay: float = 1e-4,
    seed: int = 0,
) -> LinearProbe:
    """Fit a `LinearProbe` full-batch with Adam.

    Args:
        x: `(N, C)` sampled feature vectors; y: `(N,)` class ids (classify) or targets (regress).
        outputs: K classes (classify) or 1 (regress).
    Returns:
        the probe in eval mode; identical for identical inputs and seed.
    """
    if task not in ("classify", "regress"):
        raise ValueError(f"task must be 'classify' or 'regress', got {task!r}")
    if x.ndim != 2 or y.shape != (x.shape[0],) or x.shape[0] == 0:
        raise ValueError(f"x must be (N, C) with N > 0 and y (N,), got {tuple(x.shape)} and {tuple(y.shape)}")
    x = x.float()
    generator = torch.Generator().manual_seed(seed)
    probe = LinearProbe(x.shape[1], outputs)
    with torch.no_grad():
        bound = 1.0 / np.sqrt(x.shape[1])
        probe.linear.weight.uniform_(-bound, bound, generator=generator)
        probe.linear.bias.zero_()
        probe.mean.copy_(x.mean(0))
        probe.std.copy_(x.std(0).clamp_min(1e-6))
        if task == "regress":
            probe.linear.bias.fill_(float(y.float().mean()))
    optimiser = torch.optim.Adam(probe.parameters(), lr=lr, weight_decay=weight_decay)
    target = y.long() if task == "classify" else y.float()
    with torch.enable_grad():
        for _ in range(steps):
            optimiser.zero_grad(set_to_none=True)
            out = probe(x)
            loss = F.cross_entropy(out, target) if task == "classify" else F.mse_loss(out[:, 0], target)
            loss.backward()
            optimiser.step()
    return probe.eval().requires_grad_(False)


def correct_prior(probe: LinearProbe, sampled_counts: Tensor, true_counts: Tensor) -> LinearProbe:
    """Shift a classifier trained on samples with class counts `sampled_counts` `(K,)` to the class
    frequencies `true_counts` `(K,)` (pixels of every training frame): bias_k += log p_true − log p_sampled.

    Counts below one are treated as one (a class never seen keeps a finite bias). Returns `probe`, modified.
    """
    k = probe.linear.bias.shape[0]
    if sampled_counts.shape != (k,) or true_counts.shape != (k,):
        raise ValueError(f"sampled_counts and true_counts must be ({k},), got {tuple(sampled_counts.shape)} and "
                         f"{tuple(true_counts.shape)}")
    sampled = sampled_counts.double().clamp_min(1.0)
    true = true_counts.double().clamp_min(1.0)
    shift = (true / true.sum()).log() - (sampled / sampled.sum()).log()
    with torch.no_grad():
        probe.linear.bias += shift.to(probe.linear.bias.dtype)
    return probe
