"""`videoanyup train-upsampler`: the LightningCLI of VideoAnyUp (a system class, a data class, a YAML config).

The config mirrors the constructors: `model:` holds `UpsamplerSystem`'s arguments (its `model:` the
network's `class_path` / `init_args`), `data:` the `UpsamplerDataModule`'s, `trainer:` Lightning's,
`logging:` those of `build_loggers`. `--ckpt_path FILE|last` resumes exactly, also from a mid-epoch
checkpoint. At the end the trained network (with the modes it was trained for) is written as a checkpoint
folder `<log dir>/videoanyup`, loadable with `VideoAnyUp.from_pretrained`.
"""

from __future__ import annotations

from videoanyup.tasks.training import ProjectTrainCLI, build_training_cli, fit_and_save
from videoanyup.tasks.upsampler.data import UpsamplerDataModule
from videoanyup.tasks.upsampler.system import UpsamplerSystem


def build_cli(args: list[str]) -> ProjectTrainCLI:
    """Parse `args` (a config and overrides) and instantiate the system, the data and the trainer."""
    return build_training_cli(
        ProjectTrainCLI, UpsamplerSystem, UpsamplerDataModule, args,
        prog="videoanyup train-upsampler", description="Train VideoAnyUp (LightningCLI).",
    )


def train(args: list[str]) -> int:
    """Run `videoanyup train-upsampler ARGS`; returns the exit status."""
    return fit_and_save(build_cli(args), "videoanyup")
