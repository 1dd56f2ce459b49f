"""Lightning system that pretrains a SPyNet on synthetic pairs: multi-scale end-point error over valid pixels.

The network is handed in (STYLE.md §1); the system owns the loss, the optimiser and the schedule. The loss is
the mean end-point error (EPE) of every pyramid level's flow against the ground truth average-pooled to that
level (in that level's pixels, over pixels whose whole footprint is valid), summed over levels with
`level_weights`. The two finest levels may run on a random window (see `pyramid.py`), which makes a training
step several times cheaper on CPU. Validation runs the real `SPyNet.forward` on whole crops and reports the
full-resolution EPE.
"""

from __future__ import annotations

import math
from typing import Sequence

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from videoanyup.layers.spynet import LEVELS, SPyNet
from videoanyup.tasks.flow.pyramid import level_flows
from videoanyup.tasks.flow.synthetic import PURE


def zero_flow_heads(spynet: SPyNet) -> SPyNet:
    """Zero the last convolution of every level, so an untrained SPyNet predicts zero flow (not noise) and each
    level starts as "keep the coarser estimate"; returns `spynet`."""
    for module in spynet.basic_module:
        last = module.basic_module[-1].conv
        torch.nn.init.zeros_(last.weight)
        torch.nn.init.zeros_(last.bias)
    return spynet


def kaiming_init(spynet: SPyNet) -> SPyNet:
    """He-normal weights and zero biases for every convolution (PyTorch's default shrinks the activations about
    2.5× per layer, so the five-layer modules start with vanishing features); returns `spynet`."""
    for module in spynet.modules():
        if isinstance(module, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
            torch.nn.init.zeros_(module.bias)
    return spynet


def scale_flow_heads(spynet: SPyNet, factor: float) -> SPyNet:
    """Multiply the last convolution of every level by `factor` (a small start, with the ReLUs still alive; an
    exactly zero head lets noisy early updates kill the layers before it); returns `spynet`."""
    with torch.no_grad():
        for module in spynet.basic_module:
            last = module.basic_module[-1].conv
            last.weight.mul_(factor)
            last.bias.mul_(factor)
    return spynet


def masked_huber(flow: Tensor, target: Tensor, valid: Tensor, delta: float) -> Tensor:
    """Mean Huber penalty of the end-point error over valid pixels: e²/(2δ) below `delta` pixels, e − δ/2 above.

    Near zero it is the squared error, whose minimiser is the conditional mean: a plain end-point error (a
    geometric median) keeps an untrained network at zero flow wherever the motion is still uncertain."""
    error = (flow - target).norm(dim=1, keepdim=True)  # (N, 1, h, w)
    penalty = torch.where(error < delta, 0.5 * error.square() / delta, error - 0.5 * delta)
    return (penalty * valid).sum() / valid.sum().clamp_min(1.0)


def masked_epe(flow: Tensor, target: Tensor, valid: Tensor) -> Tensor:
    """Mean end-point error over valid pixels: `flow`, `target` (N, 2, h, w), `valid` (N, 1, h, w) in {0, 1}."""
    error = (flow - target).norm(dim=1, keepdim=True)  # (N, 1, h, w)
    return (error * valid).sum() / valid.sum().clamp_min(1.0)


class FlowPretraining(L.LightningModule):
    """Trains `spynet` on batches `{"ref", "supp": (B, 3, S, S), "flow": (B, 2, S, S), "valid": (B, 1, S, S)}`.

    Args:
        spynet: the network to train (its weights are this system's only parameters).
        lr: Adam learning rate after warm-up.
        total_steps: length of the cosine schedule (decays to 0 at `total_steps`).
        warmup_steps: linear warm-up at the start.
        window: side of the random window the two finest levels train on (None: whole crop).
        level_weights: LEVELS loss weights, coarsest first.
        seed: seeds the window positions (with the global step, so resuming is exact).
        tied_steps: for the first `tied_steps` steps every level uses level 0's module (the levels solve the same
            "refine by about a pixel" problem at different scales, so one module learns from six levels' worth of
            data); at step `tied_steps` its weights are copied to every level, which then train on their own.
        huber_delta: each level's loss is the Huber penalty of its end-point error with this threshold, in that
            level's pixels (`masked_huber`); 0 uses the plain end-point error.
        teacher_steps: for the first `teacher_steps` steps every level starts from the coarser level's ground
            truth plus a smooth error of up to `teacher_noise` pixels (`pyramid.level_flows(teacher=...)`), then
            the levels train as the real cascade.
    """

    def __init__(
        self,
        spynet: SPyNet,
        *,
        lr: float = 4e-4,
        total_steps: int = 2000,
        warmup_steps: int = 100,
        window: int | None = 96,
        level_weights: Sequence[float] = (1.0, 1.0, 1.0, 1.0, 1.0, 1.0),
        seed: int = 0,
        tied_steps: int = 0,
        huber_delta: float = 2.0,
        teacher_steps: int = 0,
        teacher_noise: float = 1.0,
    ) -> None:
        super().__init__()
        if len(level_weights) != LEVELS:
            raise ValueError(f"level_weights must have {LEVELS} entries (coarsest first), got {len(level_weights)}")
        if lr <= 0 or total_steps < 1 or warmup_steps < 0:
            raise ValueError(f"lr must be > 0, total_steps ≥ 1, warmup_steps ≥ 0, got {lr}, {total_steps}, {warmup_steps}")
        self.spynet = spynet
        self.lr = lr
        self.total_steps = total_steps
        self.warmup_steps = warmup_steps
        self.window = window
        self.level_weights = tuple(float(w) for w in level_weights)
        self.seed = seed
        self.tied_steps = tied_steps
        self.huber_delta = float(huber_delta)
        self.teacher_steps = teacher_steps
        self.teacher_noise = float(teacher_noise)
        self.save_hyperparameters(ignore=["spynet"])

    def multiscale_loss(self, batch: dict[str, Tensor], generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """(weighted sum of per-level EPEs, full-resolution EPE inside the window) for one batch."""
        teacher = batch["flow"] if self.global_step < self.teacher_steps else None
        levels = level_flows(
            self.spynet, batch["ref"], batch["supp"], window=self.window, generator=generator, tied=self.tied,
            teacher=teacher, teacher_noise=self.teacher_noise,
        )
        total = batch["ref"].new_zeros(())
        finest = total
        for weight, lf in zip(self.level_weights, levels):
            s = lf.stride
            target = F.avg_pool2d(batch["flow"], s) / s if s > 1 else batch["flow"]  # (B, 2, H/s, W/s)
            valid = (F.avg_pool2d(batch["valid"], s) >= PURE).float() if s > 1 else batch["valid"]
            h, w = lf.flow.shape[-2:]
            target = target[:, :, lf.top : lf.top + h, lf.left : lf.left + w]
            valid = valid[:, :, lf.top : lf.top + h, lf.left : lf.left + w]
            finest = masked_epe(lf.flow, target, valid)
            level_loss = masked_huber(lf.flow, target, valid, self.huber_delta) if self.huber_delta > 0 else finest
            total = total + weight * level_loss
        return total, finest

    @property
    def tied(self) -> bool:
        return self.global_step < self.tied_steps

    def untie(self) -> None:
        """Copy level 0's module to every level (the end of the tied phase)."""
        shared = self.spynet.basic_module[0].state_dict()
        for module in self.spynet.basic_module[1:]:
            module.load_state_dict(shared)

    def on_train_batch_start(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        if self.tied_steps and self.global_step == self.tied_steps:
            self.untie()

    def on_train_end(self) -> None:
        if self.tied:  # training stopped inside the tied phase: the network must still hold the shared module
            self.untie()

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        state = np.random.SeedSequence([self.seed, self.global_step, 7]).generate_state(1)[0]
        generator = torch.Generator().manual_seed(int(state))
        loss, epe = self.multiscale_loss(batch, generator)
        self.log("train/loss", loss, prog_bar=True)
        self.log("train/epe", epe, prog_bar=True)
        return loss

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        if self.tied:
            flow = level_flows(self.spynet, batch["ref"], batch["supp"], tied=True)[-1].flow
        else:
            flow = self.spynet(batch["ref"], batch["supp"])
        epe = masked_epe(flow, batch["flow"], batch["valid"])
        self.log("val/epe", epe, prog_bar=True, batch_size=batch["ref"].shape[0])
        return epe

    def configure_optimizers(self):
        optimizer = torch.optim.Adam(self.spynet.parameters(), lr=self.lr)

        def factor(step: int) -> float:
            warm = min(1.0, (step + 1) / self.warmup_steps) if self.warmup_steps else 1.0
            progress = min(1.0, step / self.total_steps)
            return warm * 0.5 * (1.0 + math.cos(math.pi * progress))

        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}
