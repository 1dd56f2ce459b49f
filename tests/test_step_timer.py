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


class FakeClock:
    """The timer's clock: it moves only when a test sleeps on it, so every figure is exact."""

    def __init__(self) -> None:
        self.now = 1000.0

    def perf_counter(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


STEP, LOAD, AFTER = 0.25, 0.5, 0.125  # seconds: training_step, loading one batch, a callback after the step


class SlowData(torch.utils.data.Dataset):
    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock

    def __len__(self) -> int:
        return 5

    def __getitem__(self, index):
        self.clock.sleep(LOAD)  # one sample per batch: loading a batch takes LOAD
        return torch.full((2,), float(index))


class SleepyStep(L.LightningModule):
    def __init__(self, clock: FakeClock) -> None:
        super().__init__()
        self.clock, self.layer = clock, torch.nn.Linear(2, 1)

    def training_step(self, batch, batch_idx):
        self.clock.sleep(STEP)
        return self.layer(batch).square().mean()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


class SleepAfterStep(L.Callback):
    """Work after the optimizer step (logging, a checkpoint): in the wall time, not in the compute."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.clock.sleep(AFTER)


def test_compute_is_the_step_and_wall_is_start_to_start(tmp_path, monkeypatch, capsys):
    """compute = training_step .. optimizer step; wall = from a step's start to the next one's (the next batch's
    loading and the callbacks after the step included); ratio over the steps after the first; all reported."""
    import json

    from videoanyup.tasks import step_timer

    clock = FakeClock()
    monkeypatch.setattr(step_timer, "time", clock)
    timer = StepTimer()
    trainer = L.Trainer(
        max_steps=5, callbacks=[SleepAfterStep(clock), timer], logger=CSVLogger(tmp_path), log_every_n_steps=1,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
        accelerator="cpu",
    )
    data = torch.utils.data.DataLoader(SlowData(clock), batch_size=1, num_workers=0)
    trainer.fit(SleepyStep(clock), data)
    assert timer.seconds == pytest.approx([STEP] * 5)  # the callback that ran first after the step is not in it
    assert timer.wall == pytest.approx([STEP + AFTER + LOAD] * 4 + [STEP + AFTER])  # the last: to the end of training
    figures = timer.figures(torch.device("cpu"))
    expected_ratio = (3 * (STEP + AFTER + LOAD) + STEP + AFTER) / (4 * STEP)
    assert figures["wall_over_compute"] == pytest.approx(expected_ratio)
    assert figures["compute_mean_s"] == pytest.approx(STEP)
    assert figures["wall_median_s"] == pytest.approx(STEP + AFTER + LOAD)
    out = capsys.readouterr().out
    assert f"wall/compute {expected_ratio:.3f}" in out and f"compute median {STEP:.3f}" in out
    folder = tmp_path / "lightning_logs" / "version_0"
    saved = json.loads((folder / "speed.json").read_text())
    assert saved["wall_over_compute"] == pytest.approx(expected_ratio) and saved["wall_s"] == pytest.approx(timer.wall)
    with open(folder / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert [float(r["perf/wall_over_compute"]) for r in rows if r.get("perf/wall_over_compute")] == pytest.approx([expected_ratio])
    walls = [float(r["perf/wall_s"]) for r in rows if r.get("perf/wall_s")]
    assert walls == pytest.approx([STEP + AFTER + LOAD] * 4)  # logged from the second step on: the previous step's wall
