"""The BasicAVSR training system: handed a `BasicAVSR`, it owns the loss, the optimiser and the schedules.

Recipe of DESIGN.md §4.7: Charbonnier loss on the supervised HR sub-crop only, Adam (2e-4, betas 0.9 /
0.999), cosine schedule, SPyNet frozen for the first `spynet_freeze_steps` steps and then trained at
`spynet_lr_mult` × the learning rate, gradient clipping, and optionally one propagation mode drawn per clip.
Validation: PSNR / SSIM (RGB with a border crop, and Y) averaged over all frames of all clips, summed on
every process and all-reduced, beside the bicubic baseline.
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any, Sequence

import lightning as L
import torch
from torch import Tensor

from videoanyup.models.basicavsr import MODES, BasicAVSR
from videoanyup.tasks.avsr.degradation import bicubic_upscale, parse_scale, scale_label
from videoanyup.tasks.avsr.sampling import seeded_generator
from videoanyup.tasks.compile_option import compile_forward
from videoanyup.tasks.metrics import QualitySums, quantize
from videoanyup.tasks.training import CosineTraining

log = logging.getLogger(__name__)


def charbonnier(pred: Tensor, target: Tensor, eps: float) -> Tensor:
    """Elementwise `sqrt((pred − target)² + eps²)`, same shape as the inputs."""
    return torch.sqrt((pred - target).square() + eps * eps)


def warm_start(model: BasicAVSR, path_or_name: str) -> None:
    """Load BasicAVSR weights of the same architecture into `model` (its mode and trained modes stay).

    Raises ValueError naming `init_weights` when the checkpoint's architecture differs from the model's.
    """
    from videoanyup.checkpoint import load_state_strict, read_checkpoint, resolve_checkpoint

    folder = resolve_checkpoint(path_or_name, model.kind)
    record, state = read_checkpoint(folder)
    ours = asdict(model.config)
    differ = sorted(k for k in ours if k != "mode" and k in record and record[k] != ours[k])
    if differ:
        details = ", ".join(f"{k}: {record[k]!r} there, {ours[k]!r} here" for k in differ)
        raise ValueError(f"init_weights={str(path_or_name)!r} has another architecture ({details})")
    load_state_strict(model, state, str(folder))


class AVSRSystem(CosineTraining, L.LightningModule):
    """Trains and validates a BasicAVSR network.

    Args:
        model: the network to train.
        lr: Adam learning rate.
        betas: Adam betas.
        weight_decay: Adam weight decay.
        min_lr: learning rate at the end of the cosine schedule.
        spynet_freeze_steps: steps during which SPyNet gets no updates (BasicVSR++: 5000).
        spynet_lr_mult: SPyNet's learning rate relative to `lr` afterwards (BasicVSR++: 0.25).
        grad_clip_norm: clip the gradients' global L2 norm to this (None: no clipping).
        charbonnier_eps: ε of the Charbonnier loss `sqrt(d² + ε²)`.
        modes: propagation modes to train; more than one draws a mode per clip. None: the model's
            configured mode. The trained checkpoint records them (`model.trained_modes`).
        seed: seed of the per-clip mode draws.
        val_scales: labels of the validation scales (link them to the data module's).
        crop_border: border crop of the RGB metrics.
        val_figures: draw PSNR-vs-scale and crop figures at each validation.
        spynet_weights: SPyNet weights to start from (a bundled name such as "synthetic", a folder, a
            `train-flow` checkpoint or the published .pth); None keeps the network's own. A resumed run
            takes every weight from its checkpoint instead.
        init_weights: start from these BasicAVSR weights (a bundled name such as "lite", or a checkpoint
            folder): a fine-tune, e.g. to train weights of one mode for several. The architecture must be the
            same (every tensor, every config field but `mode`); loaded before `spynet_weights`. A resumed
            run takes every weight from its checkpoint instead.
        compile: run the network's forward through `torch.compile` (true: inductor, or a backend's name;
            `--model.compile true` on the command line), see `tasks/compile_option.py`.
    """

    def __init__(
        self,
        model: BasicAVSR,
        *,
        lr: float = 2e-4,
        betas: tuple[float, float] = (0.9, 0.999),
        weight_decay: float = 0.0,
        min_lr: float = 1e-7,
        spynet_freeze_steps: int = 5000,
        spynet_lr_mult: float = 0.25,
        grad_clip_norm: float | None = None,
        charbonnier_eps: float = 1e-6,
        modes: Sequence[str] | None = None,
        seed: int = 0,
        val_scales: Sequence[str] = ("2", "3", "4"),
        crop_border: int = 4,
        val_figures: bool = True,
        spynet_weights: str | None = None,
        init_weights: str | None = None,
        compile: bool | str = False,
    ) -> None:
        super().__init__()
        if not isinstance(model, BasicAVSR):
            raise ValueError(f"model must be a BasicAVSR, got {type(model).__name__}")
        modes = list(modes) if modes else [model.config.mode]
        unknown = [m for m in modes if m not in MODES]
        if unknown:
            raise ValueError(f"modes={modes} contains unknown modes {unknown}; known: {list(MODES)}")
        if spynet_freeze_steps < 0 or spynet_lr_mult < 0:
            raise ValueError(f"spynet_freeze_steps={spynet_freeze_steps} and spynet_lr_mult={spynet_lr_mult} must be >= 0")
        self.save_hyperparameters(ignore=["model"])
        if init_weights is not None:
            warm_start(model, init_weights)
        if spynet_weights is not None:
            from videoanyup.tasks.flow.weights import load_spynet

            model.spynet.load_state_dict(load_spynet(spynet_weights).state_dict())
        compile_forward(model, compile)
        self.model = model
        self.modes = modes
        self.val_labels = [scale_label(parse_scale(s)) for s in val_scales]
        self.quality: QualitySums | None = None
        self._example: dict[str, Tensor] | None = None

    # -- optimisation --------------------------------------------------------------------------------
    def configure_optimizers(self) -> dict[str, Any]:
        hp = self.hparams
        spynet = list(self.model.spynet.parameters())
        spynet_ids = {id(p) for p in spynet}
        rest = [p for p in self.model.parameters() if id(p) not in spynet_ids]
        optimizer = torch.optim.Adam(
            [
                {"params": rest, "lr": hp.lr, "name": "network"},
                {"params": spynet, "lr": hp.lr * hp.spynet_lr_mult, "name": "spynet"},
            ],
            lr=hp.lr,
            betas=tuple(hp.betas),
            weight_decay=hp.weight_decay,
        )
        return self.cosine_schedule(optimizer)

    def spynet_frozen(self) -> bool:
        return self.global_step < self.hparams.spynet_freeze_steps

    def on_fit_start(self) -> None:
        self.model.trained_modes = tuple(self.modes)

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        # No gradients → Adam leaves SPyNet (and its moments) untouched; decided by the step, so resumable.
        self.model.spynet.requires_grad_(not self.spynet_frozen())

    def sample_modes(self, batch_size: int) -> list[str]:
        """One mode per clip, drawn from (seed, step, rank) so a resumed run draws the same."""
        if len(self.modes) == 1:
            return self.modes * batch_size
        g = seeded_generator(self.hparams.seed, self.global_step, self.global_rank, 11)
        picks = torch.randint(0, len(self.modes), (batch_size,), generator=g)
        return [self.modes[int(i)] for i in picks]

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        lr, hr = batch["lr"], batch["hr"]  # (B, T, 3, p, p), (B, T, 3, g, g)
        size = tuple(int(v) for v in batch["hr_size"][0])
        region = tuple(int(v) for v in batch["region"][0])
        modes = self.sample_modes(lr.shape[0])
        total = lr.new_zeros(())
        for mode in dict.fromkeys(modes):  # one call per mode present, clips in their batch order
            index = torch.tensor([i for i, m in enumerate(modes) if m == mode], device=lr.device)
            out = self.model(lr[index], size=size, mode=mode, region=region)  # (b, T, 3, g, g)
            total = total + charbonnier(out, hr[index], self.hparams.charbonnier_eps).sum()
        loss = total / hr.numel()
        self.log("train/loss", loss, prog_bar=True)
        self.log("train/lr", self.trainer.optimizers[0].param_groups[0]["lr"])
        self.log("train/scale_a", size[0] / lr.shape[-2])
        return loss

    # -- validation ----------------------------------------------------------------------------------
    def on_validation_epoch_start(self) -> None:
        keys = [f"{m}/{label}" for m in [*self.modes, "bicubic"] for label in self.val_labels]
        self.quality = QualitySums(keys, crop_border=self.hparams.crop_border)
        self._example = None

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        if not batch["valid"][0]:  # padding that keeps the processes in step
            return
        lr, hr, label = batch["lr"], batch["hr"], batch["label"][0]  # (1, T, 3, h, w), (1, T, 3, H, W)
        size = tuple(hr.shape[-2:])
        bicubic = quantize(bicubic_upscale(lr[0], size))
        self.quality.update(f"bicubic/{label}", bicubic, hr[0])
        for mode in self.modes:
            out = quantize(self.model(lr, size=size, mode=mode)[0])  # (T, 3, H, W)
            self.quality.update(f"{mode}/{label}", out, hr[0])
            if self._example is None:
                self._example = {"bicubic": bicubic[0], mode: out[0], "ground truth": hr[0, 0], "label": label}

    def on_validation_epoch_end(self) -> None:
        sums = self.trainer.strategy.reduce(self.quality.sums.to(self.device), reduce_op="sum")
        self.quality.load(sums)
        results = self.quality.means()
        for key, values in results.items():
            for name in ("psnr", "ssim", "psnr_y", "ssim_y"):
                self.log(f"val/{key}/{name}", values[name], sync_dist=False)
        first = [results[f"{self.modes[0]}/{label}"]["psnr"] for label in self.val_labels if f"{self.modes[0]}/{label}" in results]
        if first:
            self.log("val/psnr", sum(first) / len(first), prog_bar=True, sync_dist=False)
        if self.hparams.val_figures and not self.trainer.sanity_checking and results:
            folder = Path(self.trainer.log_dir or self.trainer.default_root_dir) / "figures"  # collective: all ranks
            if self.trainer.is_global_zero:
                self._log_figures(results, folder)

    def _log_figures(self, results: dict[str, dict[str, float]], folder: Path) -> None:
        from videoanyup.tasks.avsr.figures import psnr_vs_scale, side_by_side

        curves: dict[str, dict[str, float]] = {}
        for key, values in results.items():
            method, label = key.split("/")
            curves.setdefault(method, {})[label] = values["psnr"]
        figures = {"psnr_vs_scale": psnr_vs_scale(curves, title=f"validation, step {self.global_step}")}
        if self._example is not None:
            example = dict(self._example)
            label = example.pop("label")
            figures["crops"] = side_by_side(list(example.values()), [f"{k} {label}" for k in example])
        import matplotlib.pyplot as plt

        folder.mkdir(parents=True, exist_ok=True)
        for name, fig in figures.items():
            path = folder / f"{name}_step{self.global_step:07d}.png"
            fig.savefig(path)
            plt.close(fig)
            for logger in self.loggers:
                if hasattr(logger, "log_image"):  # WandbLogger
                    logger.log_image(key=f"val/{name}", images=[str(path)], step=self.global_step)

    # -- checkpoints ---------------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Record the network's architecture, so `load_weights` can rebuild it from the `.ckpt` alone."""
        checkpoint["basicavsr"] = {"config": asdict(self.model.config), "trained_modes": list(self.modes)}
