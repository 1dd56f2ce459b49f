"""`StepTimer`: per training step, its compute time and its wall time; logged, summarised at the end of every fit.

Every `videoanyup train*` command has it (`build_training_cli`), so a run's speed is in its own log and in one
line at the end, without a separate benchmark. Two figures per step `i`, both read on the host clock:

- **compute**: from the step's start (`on_train_batch_start`, the batch already loaded and on the device) to
  the end of its optimizer step (a step post-hook on every optimizer): `training_step`, backward, gradient
  clipping and `optimizer.step`. On CUDA the device is synchronised there, so the step's queued work is in it.
- **wall**: from the step's start to the next step's start (the last step: to the end of training). Besides
  the compute it holds everything else the fit loop does for that step: loading the next batch, logging,
  callbacks, checkpoints, validation.

`wall / compute` over the same steps (the first, warm-up, left out) is what the loop costs on top of the
arithmetic: 1.0 is a loop that only computes. Logged per row: `perf/step_s` (compute) and `perf/wall_s`
(wall), each the mean over the steps since the previous logged row; `perf/peak_gib` on CUDA. At the end: a
`speed:` line on stdout, the same figures in the loggers (`perf/compute_mean_s`, `perf/wall_mean_s`,
`perf/wall_over_compute`, ...) and `speed.json` in the run's log folder.
"""

from __future__ import annotations

import json
import logging
import statistics
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch

log = logging.getLogger(__name__)


class StepTimer(L.Callback):
    """Times each optimisation step's compute and wall time, and tracks peak memory.

    One CUDA synchronisation per step, at the end of its optimizer step; a step's start needs none: the
    previous step's end already waited for the device.

    Attributes (after a fit): `seconds` (compute per step), `wall` (wall per step, same length),
    `run_seconds` (first step's start to the end of training).
    """

    def __init__(self) -> None:
        self.seconds: list[float] = []
        self.wall: list[float] = []
        self.run_seconds = 0.0
        self._start: float | None = None
        self._compute_end: float | None = None
        self._first_start: float | None = None
        self._hooks: list[Any] = []
        self._cuda: torch.device | None = None

    # -- clocks ------------------------------------------------------------------------------------------------
    def _now(self) -> float:
        if self._cuda is not None:
            torch.cuda.synchronize(self._cuda)
        return time.perf_counter()

    def _after_optimizer_step(self, optimizer, args, kwargs) -> None:
        if self._start is not None:
            self._compute_end = self._now()

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.seconds, self.wall, self.run_seconds = [], [], 0.0
        self._start = self._compute_end = self._first_start = None
        device = trainer.strategy.root_device
        self._cuda = device if device.type == "cuda" else None
        if self._cuda is not None:
            torch.cuda.reset_peak_memory_stats(device)
        self._remove_hooks()
        self._hooks = [optimizer.register_step_post_hook(self._after_optimizer_step) for optimizer in trainer.optimizers]

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        now = time.perf_counter()
        if self._start is not None and len(self.wall) < len(self.seconds):
            self.wall.append(now - self._start)
        self._start, self._compute_end = now, None
        if self._first_start is None:
            self._first_start = now

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self._start is None:
            return
        end = self._compute_end if self._compute_end is not None else self._now()  # no optimizer step: the batch
        self.seconds.append(end - self._start)
        # The means over the last `log_every_n_steps` steps: a logged row then stands for every step since the
        # previous one, not for one step whose kind repeats with the logging period (with clip batches every
        # 2nd step and a row every 10th, a single step's time would always be a clip step's).
        n = max(1, trainer.log_every_n_steps)
        window = self.seconds[-n:]
        pl_module.log("perf/step_s", sum(window) / len(window), on_step=True, on_epoch=False, batch_size=1)
        if self.wall:
            walls = self.wall[-n:]
            pl_module.log("perf/wall_s", sum(walls) / len(walls), on_step=True, on_epoch=False, batch_size=1)
        if self._cuda is not None:
            peak = torch.cuda.max_memory_allocated(self._cuda) / 2**30
            pl_module.log("perf/peak_gib", peak, on_step=True, on_epoch=False, batch_size=1)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._remove_hooks()
        if self._first_start is None:
            return
        now = time.perf_counter()
        self.run_seconds = now - self._first_start
        if self._start is not None and len(self.wall) < len(self.seconds):
            self.wall.append(now - self._start)  # the last step: to the end of training
        self._start = None
        folder = trainer.log_dir  # collective under DDP: every rank asks
        if not trainer.is_global_zero:
            return
        device = trainer.strategy.root_device
        print(f"speed: {self.summary(device)}", flush=True)
        figures = self.figures(device)
        for logger in trainer.loggers:
            logger.log_metrics({f"perf/{k}": v for k, v in figures.items() if isinstance(v, (int, float))}, step=trainer.global_step)
        if folder:
            path = Path(folder) / "speed.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps({**figures, "compute_s": self.seconds, "wall_s": self.wall}, indent=1) + "\n")

    def _remove_hooks(self) -> None:
        for hook in self._hooks:
            hook.remove()
        self._hooks = []

    # -- summary -----------------------------------------------------------------------------------------------
    def figures(self, device: torch.device | None = None) -> dict[str, float | int]:
        """Steps timed; median and mean compute and wall seconds per step and their ratio, over the same steps,
        the first (warm-up) left out; the run's wall time per step; peak GiB on CUDA."""
        n = min(len(self.seconds), len(self.wall))
        compute, wall = self.seconds[:n], self.wall[:n]
        compute, wall = (compute[1:], wall[1:]) if n > 1 else (compute, wall)
        out: dict[str, float | int] = {"steps": len(self.seconds)}
        if compute:
            out.update(
                compute_median_s=statistics.median(compute), compute_mean_s=statistics.fmean(compute),
                wall_median_s=statistics.median(wall), wall_mean_s=statistics.fmean(wall),
                wall_over_compute=sum(wall) / sum(compute) if sum(compute) > 0 else float("nan"),
            )
        if self.seconds:
            out["run_s_per_step"] = self.run_seconds / len(self.seconds)
        if device is not None and device.type == "cuda":
            out["peak_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
        return out

    def summary(self, device: torch.device) -> str:
        """One line: steps timed; compute and wall seconds per step (median, mean; the first step left out), their
        ratio, and the run's wall time per step (everything between steps included)."""
        f = self.figures(device)
        if "compute_mean_s" not in f:
            return "no training steps timed"
        line = (f"{f['steps']} steps timed (first left out): compute median {f['compute_median_s']:.3f} / mean "
                f"{f['compute_mean_s']:.3f} s/step, wall median {f['wall_median_s']:.3f} / mean {f['wall_mean_s']:.3f} "
                f"s/step, wall/compute {f['wall_over_compute']:.3f}; run {f['run_s_per_step']:.3f} s/step "
                f"(loading, validation, checkpoints included)")
        if "peak_gib" in f:
            line += f", peak memory {f['peak_gib']:.2f} GiB"
        return line
