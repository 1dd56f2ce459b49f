"""`videoanyup train-upsampler`: the LightningCLI of VideoAnyUp (a system class, a data class, a YAML config).

The config mirrors the constructors: `model:` holds `UpsamplerSystem`'s arguments (its `model:` the
network's `class_path` / `init_args`), `data:` the `UpsamplerDataModule`'s, `trainer:` Lightning's,
`logging:` those of `build_loggers`. `--ckpt_path FILE|last` resumes exactly, also from a mid-epoch
checkpoint. At the end the trained network (with the modes it was trained for) is written as a checkpoint
folder `<log dir>/videoanyup`, loadable with `VideoAnyUp.from_pretrained`.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Optional

from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from videoanyup.tasks.logging import build_loggers
from videoanyup.tasks.upsampler.data import UpsamplerDataModule
from videoanyup.tasks.upsampler.system import UpsamplerSystem

log = logging.getLogger(__name__)


class UpsamplerTrainCLI(LightningCLI):
    """LightningCLI with resumption and the project's loggers."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_argument("--ckpt_path", type=Optional[str], default=None, help="resume from this .ckpt (or 'last')")
        parser.add_function_arguments(build_loggers, "logging")

    def instantiate_trainer(self, **kwargs):
        if self.config.trainer.get("logger") is None:  # not set in the config: the project's loggers
            kwargs["logger"] = build_loggers(**self.config.logging)
        return super().instantiate_trainer(**kwargs)


def build_cli(args: list[str]) -> UpsamplerTrainCLI:
    """Parse `args` (a config and overrides) and instantiate the system, the data and the trainer."""
    with warnings.catch_warnings():  # `videoanyup train-upsampler …` passes its own sys.argv tail as `args`
        warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended")
        return UpsamplerTrainCLI(
            UpsamplerSystem,
            UpsamplerDataModule,
            args=args,
            run=False,
            save_config_kwargs={"overwrite": True},
            parser_kwargs={"prog": "videoanyup train-upsampler", "description": "Train VideoAnyUp (LightningCLI)."},
        )


def train(args: list[str]) -> int:
    """Run `videoanyup train-upsampler ARGS`; returns the exit status."""
    cli = build_cli(args)
    trainer = cli.trainer
    trainer.fit(cli.model, datamodule=cli.datamodule, ckpt_path=cli.config.ckpt_path)
    folder = Path(trainer.log_dir or trainer.default_root_dir) / "videoanyup"  # log_dir is collective: all ranks
    if trainer.is_global_zero:
        cli.model.model.save_pretrained(folder)
        log.info("trained network written to %s", folder)
    return 0
