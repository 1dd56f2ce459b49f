"""`videoanyup train`: the LightningCLI of BasicAVSR (a system class, a data class, a YAML config).

The config mirrors the constructors: `model:` holds `AVSRSystem`'s arguments (its `model:` the network's
`class_path` / `init_args`), `data:` the `AVSRDataModule`'s, `trainer:` Lightning's, `logging:` those of
`build_loggers`. `--ckpt_path FILE|last` resumes exactly, also from a mid-epoch checkpoint. At the end the
trained network is written as a checkpoint folder `<log dir>/basicavsr` for `evaluate` / `upscale`.
"""

from __future__ import annotations

from lightning.pytorch.cli import LightningArgumentParser

from videoanyup.tasks.avsr.datamodule import AVSRDataModule
from videoanyup.tasks.avsr.system import AVSRSystem
from videoanyup.tasks.training import ProjectTrainCLI, build_training_cli, fit_and_save


class AVSRTrainCLI(ProjectTrainCLI):
    """The project's training CLI with the validation scales linked from the data to the system."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.link_arguments("data.val_scales", "model.val_scales")
        super().add_arguments_to_parser(parser)


def build_cli(args: list[str]) -> AVSRTrainCLI:
    """Parse `args` (a config and overrides) and instantiate the system, the data and the trainer."""
    return build_training_cli(
        AVSRTrainCLI, AVSRSystem, AVSRDataModule, args, prog="videoanyup train", description="Train BasicAVSR (LightningCLI)."
    )


def train(args: list[str]) -> int:
    """Run `videoanyup train ARGS`; returns the exit status."""
    return fit_and_save(build_cli(args), "basicavsr")
