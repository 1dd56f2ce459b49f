"""Experiment loggers: CSV always, plus Weights & Biases — online when a key is configured, offline otherwise.

`wandb` is optional at run time: if it cannot be imported, or `wandb="off"`, the CSV logger alone records
the metrics (`<save_dir>/<name>/version_N/metrics.csv`).
"""

from __future__ import annotations

import logging
import os
from typing import Literal

from lightning.pytorch.loggers import CSVLogger, Logger

log = logging.getLogger(__name__)

WANDB_MODES = ("auto", "online", "offline", "off")
WandbMode = Literal["auto", "online", "offline", "off"]  # the command line refuses anything else, naming --logging.wandb


def wandb_key_configured() -> bool:
    """Whether a W&B API key is set (environment variable `WANDB_API_KEY`)."""
    return bool(os.environ.get("WANDB_API_KEY"))


def build_loggers(
    save_dir: str = "runs",
    name: str = "basicavsr",
    wandb: WandbMode = "auto",
    project: str = "videoanyup",
) -> list[Logger]:
    """The loggers of a training run; the CSV logger comes first, so checkpoints and figures go in its folder.

    Args:
        save_dir: root folder of the logs.
        name: experiment name (sub-folder, W&B run name).
        wandb: "auto" (online if `WANDB_API_KEY` is set, else offline), "online", "offline" or "off".
        project: W&B project.
    """
    if wandb not in WANDB_MODES:
        raise ValueError(f"wandb={wandb!r} must be one of {WANDB_MODES}")
    loggers: list[Logger] = [CSVLogger(save_dir=save_dir, name=name)]
    if wandb == "off":
        return loggers
    if wandb == "online" and not wandb_key_configured():
        raise ValueError("wandb='online' needs WANDB_API_KEY; use wandb='auto' or 'offline' to log locally")
    try:
        from lightning.pytorch.loggers import WandbLogger

        import wandb as _wandb  # noqa: F401 - only to know it is installed
    except ImportError:
        log.warning("wandb is not installed; logging to CSV only")
        return loggers
    offline = wandb == "offline" or (wandb == "auto" and not wandb_key_configured())
    loggers.append(WandbLogger(project=project, name=name, save_dir=save_dir, offline=offline, log_model=False))
    return loggers
