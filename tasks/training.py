"""What the project's Lightning trainings share: the cosine schedule, gradient clipping, and the command line.

`AVSRSystem` (BasicAVSR) and `UpsamplerSystem` (VideoAnyUp) both mix in `CosineTraining`; `videoanyup train`
and `videoanyup train-upsampler` are both a `ProjectTrainCLI` run by `fit_and_save`.
"""

from __future__ import annotations

import logging
import math
import os
import warnings
from pathlib import Path
from typing import Any, Optional

import torch
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from videoanyup.tasks.logging import build_loggers
from videoanyup.tasks.step_timer import StepTimer

log = logging.getLogger(__name__)


class CosineFactor:
    """Cosine decay from 1 to `floor` over `total` steps (a picklable `LambdaLR` multiplier)."""

    def __init__(self, total: int, floor: float) -> None:
        self.total, self.floor = max(1, total), floor

    def __call__(self, step: int) -> float:
        progress = min(step, self.total) / self.total
        return self.floor + (1.0 - self.floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


class CosineTraining:
    """LightningModule mix-in: a per-step cosine schedule over the run's step budget and norm clipping.

    Needs `hparams.lr`, `hparams.min_lr` and `hparams.grad_clip_norm` (None: no clipping).
    """

    def cosine_schedule(self, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
        """`configure_optimizers`' return value for `optimizer` with the cosine schedule."""
        hp = self.hparams
        total = int(self.trainer.estimated_stepping_batches)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, CosineFactor(total, hp.min_lr / hp.lr))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None) -> None:
        clip = self.hparams.grad_clip_norm if gradient_clip_val is None else gradient_clip_val
        if clip:
            self.clip_gradients(optimizer, gradient_clip_val=clip, gradient_clip_algorithm=gradient_clip_algorithm or "norm")

    def on_train_start(self) -> None:
        # A restored `LambdaLR` brings back the multiplier's saved `total`: re-size the cosine to this run's
        # step budget, so that a resume with a larger `max_steps` continues training instead of sitting at
        # the floor. Unchanged `max_steps` → the same total, the exact resume.
        total = max(1, int(self.trainer.estimated_stepping_batches))
        for config in self.trainer.lr_scheduler_configs:
            for factor in getattr(config.scheduler, "lr_lambdas", []):
                if isinstance(factor, CosineFactor):
                    factor.total = total


class ProjectTrainCLI(LightningCLI):
    """LightningCLI with `--ckpt_path` (resume exactly, 'last' included), `--checkpoint_dir` and the project's loggers.

    The recipes fix their `ModelCheckpoint`'s folder (so that `--ckpt_path last` finds the previous run's
    `last.ckpt`); `--checkpoint_dir DIR` moves every checkpoint callback there, for a second run of the same
    recipe. (`--trainer.callbacks.dirpath` cannot: jsonargparse applies it to the *last* callback of the list.)
    """

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_argument("--ckpt_path", type=Optional[str], default=None, help="resume from this .ckpt (or 'last')")
        parser.add_argument(
            "--checkpoint_dir", type=Optional[str], default=None,
            help="write checkpoints here (and look for 'last' here) instead of the recipe's folder",
        )
        parser.add_function_arguments(build_loggers, "logging")

    def instantiate_trainer(self, **kwargs):
        if self.config.trainer.get("logger") is None:  # not set in the config: the project's loggers
            kwargs["logger"] = build_loggers(**self.config.logging)
        trainer = super().instantiate_trainer(**kwargs)
        folder = self.config.get("checkpoint_dir")
        if folder is not None:
            if not trainer.checkpoint_callbacks:
                self.parser.error(f"--checkpoint_dir {folder!r}: this run writes no checkpoints (trainer.enable_checkpointing is false)")
            for callback in trainer.checkpoint_callbacks:
                callback.dirpath = os.path.realpath(os.path.expanduser(folder))  # as ModelCheckpoint stores it
        return trainer


def build_training_cli(cli_class: type[ProjectTrainCLI], system, data, args: list[str], *, prog: str, description: str):
    """Parse `args` (a config and overrides) and instantiate the system, the data and the trainer."""
    with warnings.catch_warnings():  # the subcommand passes its own sys.argv tail as `args`
        warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended")
        return cli_class(
            system,
            data,
            args=args,
            run=False,
            save_config_kwargs={"overwrite": True},
            trainer_defaults={"callbacks": [StepTimer()]},  # always present: every run logs its speed
            parser_kwargs={"prog": prog, "description": description},
        )


def fit_and_save(cli: ProjectTrainCLI, folder_name: str) -> int:
    """Fit (resuming from `--ckpt_path`), then write the trained network to `<log dir>/<folder_name>`."""
    trainer = cli.trainer
    trainer.fit(cli.model, datamodule=cli.datamodule, ckpt_path=cli.config.ckpt_path)
    folder = Path(trainer.log_dir or trainer.default_root_dir) / folder_name  # log_dir is collective: all ranks
    if trainer.is_global_zero:
        cli.model.model.save_pretrained(folder)
        log.info("trained network written to %s", folder)
    return 0
