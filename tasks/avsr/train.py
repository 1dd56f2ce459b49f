"""`videoanyup train`: the LightningCLI of BasicAVSR (a system class, a data class, a YAML config).

The config mirrors the constructors: `model:` holds `AVSRSystem`'s arguments (its `model:` the network's
`class_path` / `init_args`), `data:` the `AVSRDataModule`'s, `trainer:` Lightning's, `logging:` those of
`build_loggers`. `--ckpt_path FILE|last` resumes exactly, also from a mid-epoch checkpoint. At the end the
trained network is written as a checkpoint folder `<log dir>/basicavsr` for `evaluate` / `upscale`.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Optional

from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from videoanyup.tasks.avsr.datamodule import AVSRDataModule
from videoanyup.tasks.avsr.system import AVSRSystem
from videoanyup.tasks.logging import build_loggers

log = logging.getLogger(__name__)


class AVSRTrainCLI(LightningCLI):
    """LightningCLI with linked validation scales, resumption and the project's loggers."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.link_arguments("data.val_scales", "model.val_scales")
        parser.add_argument("--ckpt_path", type=Optional[str], default=None, help="resume from this .ckpt (or 'last')")
        parser.add_function_arguments(build_loggers, "logging")

    def instantiate_trainer(self, **kwargs):
        if self.config.trainer.get("logger") is None:  # not set in the config: the project's loggers
            kwargs["logger"] = build_loggers(**self.config.logging)
        return super().instantiate_trainer(**kwargs)


def build_cli(args: list[str]) -> AVSRTrainCLI:
    """Parse `args` (a config and overrides) and instantiate the system, the data and the trainer."""
    with warnings.catch_warnings():  # `videoanyup train …` passes its own sys.argv tail as `args`
        warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended")
        return AVSRTrainCLI(
            AVSRSystem,
            AVSRDataModule,
            args=args,
            run=False,
            save_config_kwargs={"overwrite": True},
            parser_kwargs={"prog": "videoanyup train", "description": "Train BasicAVSR (LightningCLI)."},
        )


def train(args: list[str]) -> int:
    """Run `videoanyup train ARGS`; returns the exit status."""
    cli = build_cli(args)
    trainer = cli.trainer
    trainer.fit(cli.model, datamodule=cli.datamodule, ckpt_path=cli.config.ckpt_path)
    folder = Path(trainer.log_dir or trainer.default_root_dir) / "basicavsr"  # log_dir is collective: all ranks
    if trainer.is_global_zero:
        cli.model.model.save_pretrained(folder)
        log.info("trained network written to %s", folder)
    return 0
