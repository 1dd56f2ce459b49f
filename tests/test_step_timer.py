"""`StepTimer`: the logged step time is the mean since the last row; the step times leave out what happens
between steps, the run figure has it."""

from __future__ import annotations

import csv
import time

import pytest
import torch

L = pytest.importorskip("lightning")

from lightning.pytorch.loggers import CSVLogger  # noqa: E402

from videoanyup.tasks.step_timer import StepTimer  # noqa: E402

PAUSE = 0.05  # seconds each validation sleeps: between steps, so in the run's time and in no step's


class SleepyValidation(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(2, 1)

    def training_step(self, batch, batch_idx):
        return self.layer(batch[0]).square().mean()

    def validation_step(self, batch, batch_idx):
        time.sleep(PAUSE)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_run_time_includes_what_happens_between_steps(tmp_path, capsys):
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(8, 2)), batch_size=2)
    timer = StepTimer()
    trainer = L.Trainer(
        max_steps=4, val_check_interval=2, limit_val_batches=1, num_sanity_val_steps=0, callbacks=[timer],
        logger=CSVLogger(tmp_path), log_every_n_steps=2, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, default_root_dir=tmp_path, accelerator="cpu",
    )
    trainer.fit(SleepyValidation(), data, data)
    assert len(timer.seconds) == 4 and all(s > 0 for s in timer.seconds)
    with open(tmp_path / "lightning_logs" / "version_0" / "metrics.csv") as f:
        logged = [float(r["perf/step_s"]) for r in csv.DictReader(f) if r.get("perf/step_s")]
    pairs = [(timer.seconds[0] + timer.seconds[1]) / 2, (timer.seconds[2] + timer.seconds[3]) / 2]
    assert logged == pytest.approx(pairs, rel=1e-5)  # each row: the mean of the steps since the last one
    assert timer.run_seconds >= sum(timer.seconds) + 2 * PAUSE  # two validations ran between or after steps
    assert "speed: 4 steps timed" in capsys.readouterr().out
    assert f"run {timer.run_seconds / 4:.3f} s/step" in timer.summary(torch.device("cpu"))
