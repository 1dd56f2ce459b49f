"""`StepTimer`: the wall time of every training step and the peak accelerator memory, logged and summarised.

Every `videoanyup train*` command has it (`build_training_cli`), so a run's speed is in its own log
(`perf/step_s`: the mean over the steps since the previous logged row; `perf/peak_gib` on CUDA) and in one
line at the end, without a separate benchmark.

A step is `training_step`, backward and the optimiser step. What happens between steps — waiting for the
loader, validation, checkpoints, logging — is not in it; the summary's "run" figure is the whole fit's wall
time divided by its steps, everything included.
"""

from __future__ import annotations

import statistics
import time

import lightning as L
import torch


class StepTimer(L.Callback):
    """Times each optimisation step and tracks peak memory.

    One CUDA synchronisation per step, at its end (the step's queued work is done when the clock is read);
    the start needs none: the previous step's end already waited for the device.
    """

    def __init__(self) -> None:
        self.seconds: list[float] = []
        self.run_seconds = 0.0  # the fit's wall time from the first step's start to the end of training
        self._start = 0.0
        self._first_start: float | None = None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.seconds, self.run_seconds, self._first_start = [], 0.0, None
        if trainer.strategy.root_device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(trainer.strategy.root_device)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._start = time.perf_counter()
        if self._first_start is None:
            self._first_start = self._start

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        cuda = trainer.strategy.root_device.type == "cuda"
        if cuda:
            torch.cuda.synchronize(trainer.strategy.root_device)
        self.seconds.append(time.perf_counter() - self._start)
        # The mean over the last `log_every_n_steps` steps: a logged row then stands for every step since the
        # previous one, not for one step whose kind repeats with the logging period (with clip batches every
        # 2nd step and a row every 10th, a single step's time would always be a clip step's).
        window = self.seconds[-max(1, trainer.log_every_n_steps) :]
        pl_module.log("perf/step_s", sum(window) / len(window), on_step=True, on_epoch=False, batch_size=1)
        if cuda:
            peak = torch.cuda.max_memory_allocated(trainer.strategy.root_device) / 2**30
            pl_module.log("perf/peak_gib", peak, on_step=True, on_epoch=False, batch_size=1)

    def summary(self, device: torch.device) -> str:
        """One line: steps timed, median and mean seconds per step (the first step, warm-up, left out), and the
        run's wall time per step (everything between steps included)."""
        timed = self.seconds[1:] or self.seconds
        if not timed:
            return "no training steps timed"
        line = (f"{len(self.seconds)} steps timed: median {statistics.median(timed):.3f} s/step, "
                f"mean {statistics.fmean(timed):.3f} s/step (first step left out); "
                f"run {self.run_seconds / len(self.seconds):.3f} s/step (loading, validation, checkpoints included)")
        if device.type == "cuda":
            line += f", peak memory {torch.cuda.max_memory_allocated(device) / 2**30:.2f} GiB"
        return line

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._first_start is not None:
            self.run_seconds = time.perf_counter() - self._first_start
        if trainer.is_global_zero:
            print(f"speed: {self.summary(trainer.strategy.root_device)}", flush=True)
