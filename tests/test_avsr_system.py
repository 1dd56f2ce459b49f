"""The BasicAVSR training system: exact mid-epoch resume, DDP validation, the SPyNet policy, the loss."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

L = pytest.importorskip("lightning")

from videoanyup.models.basicavsr import BasicAVSR  # noqa: E402
from videoanyup.tasks.avsr.datamodule import AVSRDataModule  # noqa: E402
from videoanyup.tasks.avsr.system import AVSRSystem, charbonnier  # noqa: E402
from videoanyup.tasks.training import CosineFactor  # noqa: E402

from conftest import TINY_BASICAVSR as TINY  # noqa: E402


def tiny_model() -> BasicAVSR:
    return BasicAVSR.from_config("lite", **TINY)


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    from conftest import write_synthetic_clip

    root = tmp_path_factory.mktemp("avsr_clips")
    write_synthetic_clip(root / "train" / "000", frames=6, height=40, width=44)
    write_synthetic_clip(root / "train" / "001.mp4", frames=6, height=40, width=44, image="coffee", step=(1, -2))
    write_synthetic_clip(root / "train" / "002", frames=6, height=40, width=44, image="chelsea", step=(-1, 1))
    for name, image in [("a", "rocket"), ("b", "coffee"), ("c", "chelsea")]:  # an odd number of clips
        write_synthetic_clip(root / "val" / name, frames=3, height=32, width=36, image=image)
    return root


def data_module(root: Path, **overrides) -> AVSRDataModule:
    kwargs = dict(
        num_frames=3, lr_patch=10, gt_patch=10, scale_range=(1.0, 3.0), batch_size=2, samples_per_epoch=8,
        num_workers=2, val_scales=["2", "2.5x3"], seed=3,
    )
    kwargs.update(overrides)
    return AVSRDataModule([str(root / "train")], [str(root / "val")], **kwargs)


def trainer(root: Path, **overrides) -> "L.Trainer":
    kwargs = dict(
        accelerator="cpu", devices=1, max_steps=6, logger=False, enable_progress_bar=False, enable_model_summary=False,
        limit_val_batches=0, num_sanity_val_steps=0, use_distributed_sampler=False, default_root_dir=str(root),
    )
    kwargs.update(overrides)
    return L.Trainer(**kwargs)


def test_resume_from_mid_epoch_checkpoint_is_bit_identical(clips, tmp_path):
    """4 batches per epoch, checkpoint after step 3 (mid-epoch), SPyNet unfrozen at step 4, end at step 6."""
    system_kwargs = dict(spynet_freeze_steps=4, grad_clip_norm=0.5, modes=["bidirectional", "unidirectional"], seed=5)

    L.seed_everything(0)
    first = AVSRSystem(tiny_model(), **system_kwargs)
    spynet_at_start = {k: v.clone() for k, v in first.model.spynet.state_dict().items()}
    checkpoint = L.pytorch.callbacks.ModelCheckpoint(dirpath=tmp_path / "ckpt", every_n_train_steps=3, save_top_k=-1)
    trainer(tmp_path, callbacks=[checkpoint]).fit(first, data_module(clips))
    mid = tmp_path / "ckpt" / "epoch=0-step=3.ckpt"
    assert mid.is_file(), sorted(p.name for p in (tmp_path / "ckpt").iterdir())

    L.seed_everything(1)  # a different global RNG state must not matter
    second = AVSRSystem(tiny_model(), **system_kwargs)
    trainer(tmp_path, enable_checkpointing=False).fit(second, data_module(clips), ckpt_path=str(mid))

    state_mid = torch.load(mid, map_location="cpu", weights_only=True)
    assert state_mid["loops"]["fit_loop"]["epoch_loop.batch_progress"]["current"]["completed"] < 4  # mid-epoch
    for key, value in first.model.state_dict().items():
        assert torch.equal(value, second.model.state_dict()[key]), key
    spynet_mid = {k[len("model.spynet.") :]: v for k, v in state_mid["state_dict"].items() if k.startswith("model.spynet.")}
    assert all(torch.equal(spynet_mid[k], v) for k, v in spynet_at_start.items()), "SPyNet moved while frozen"
    assert any(not torch.equal(v, first.model.spynet.state_dict()[k]) for k, v in spynet_at_start.items()), "SPyNet never trained"
    assert first.model.trained_modes == ("bidirectional", "unidirectional")


DDP_CONFIG = """
seed_everything: 0
model:
  model:
    class_path: videoanyup.models.basicavsr.BasicAVSR
    init_args:
      config: {TINY}
  spynet_freeze_steps: 1
  grad_clip_norm: 1.0
  modes: [bidirectional, unidirectional]
data:
  train_sources: [{root}/train]
  val_sources: [{root}/val]
  num_frames: 3
  lr_patch: 10
  gt_patch: 10
  scale_range: [1.0, 3.0]
  batch_size: 1
  samples_per_epoch: 4
  num_workers: 0
  val_scales: ["2.5x3"]
trainer:
  accelerator: cpu
  devices: 2
  strategy: ddp_find_unused_parameters_true
  max_steps: 3
  val_check_interval: 3
  check_val_every_n_epoch: null
  num_sanity_val_steps: 0
  use_distributed_sampler: false
  enable_progress_bar: false
  enable_model_summary: false
  enable_checkpointing: false
  default_root_dir: {out}
logging:
  save_dir: {out}
  name: ddp
  wandb: "off"
"""


def test_ddp_two_processes_validation_equals_single_process(clips, tmp_path):
    """2 CPU processes (gloo) train 3 steps; the validation over 3 clips (odd) gathered over both ranks
    equals a single-process validation of the same weights."""
    import csv
    import json
    import os

    tiny = json.dumps(TINY)
    config = tmp_path / "ddp.yaml"
    config.write_text(DDP_CONFIG.format(TINY=tiny, root=clips, out=tmp_path / "out"))
    env = dict(os.environ, OMP_NUM_THREADS="1", WANDB_MODE="offline", PYTHONWARNINGS="ignore")
    run = subprocess.run(
        [sys.executable, "-m", "videoanyup.tasks.cli", "train", "--config", str(config)],
        capture_output=True, text=True, timeout=240, env=env, cwd=tmp_path,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    log_dir = tmp_path / "out" / "ddp" / "version_0"
    with open(log_dir / "metrics.csv") as f:
        rows = [r for r in csv.DictReader(f) if r.get("val/psnr")]
    assert len(rows) == 1  # one validation, after the last step
    assert (log_dir / "figures" / "psnr_vs_scale_step0000003.png").is_file()
    ddp = {k: float(v) for k, v in rows[-1].items() if k.startswith("val/") and v}

    model = BasicAVSR.from_pretrained(log_dir / "basicavsr")
    assert model.trained_modes == ("bidirectional", "unidirectional")
    system = AVSRSystem(model, modes=["bidirectional", "unidirectional"], val_scales=["2.5x3"], val_figures=False)
    data = data_module(clips, val_scales=["2.5x3"], num_workers=0)
    single = trainer(tmp_path, limit_val_batches=None).validate(system, data, verbose=False)[0]
    assert set(ddp) == {k for k in single if k.startswith("val/")}
    frames = system.quality.means()["bidirectional/x2.5x3"]["frames"]
    assert frames == 3 * 3  # every clip once, the padding not counted
    for key, value in ddp.items():
        assert abs(value - single[key]) <= 1e-5 * max(1.0, abs(value)), (key, value, single[key])


def test_spynet_policy_and_schedule():
    system = AVSRSystem(tiny_model(), lr=1e-3, spynet_lr_mult=0.25, min_lr=1e-5)
    trainer_ = L.Trainer(max_steps=10, logger=False, enable_checkpointing=False)
    system.trainer = trainer_
    config = system.configure_optimizers()
    groups = config["optimizer"].param_groups
    assert [g["name"] for g in groups] == ["network", "spynet"]
    assert groups[1]["lr"] == pytest.approx(0.25 * groups[0]["lr"])
    assert {id(p) for p in groups[1]["params"]} == {id(p) for p in system.model.spynet.parameters()}
    factor = CosineFactor(10, 0.01)
    assert factor(0) == pytest.approx(1.0) and factor(10) == pytest.approx(0.01) and factor(5) == pytest.approx(0.505)


def test_charbonnier_and_bad_arguments():
    pred, target = torch.zeros(2, 3), torch.full((2, 3), 0.5)
    assert torch.allclose(charbonnier(pred, target, 1e-6), torch.full((2, 3), 0.5))
    with pytest.raises(ValueError, match="modes"):
        AVSRSystem(tiny_model(), modes=["sideways"])
    with pytest.raises(ValueError, match="model must be a BasicAVSR"):
        AVSRSystem(torch.nn.Linear(2, 2))


def test_resumed_cosine_is_resized_to_the_new_step_budget():
    """A restored LambdaLR brings back its multiplier's old `total`; on_train_start re-sizes it, so a resume
    with a larger max_steps keeps training (the old total would pin the rate at the floor past it)."""
    from types import SimpleNamespace

    system = AVSRSystem(tiny_model(), lr=1e-3, min_lr=1e-6)
    optimizer = torch.optim.Adam(system.model.parameters(), lr=1e-3)
    old = torch.optim.lr_scheduler.LambdaLR(optimizer, CosineFactor(100, 1e-3))
    for _ in range(100):
        old.step()
    restored = torch.optim.lr_scheduler.LambdaLR(optimizer, CosineFactor(400, 1e-3))
    restored.load_state_dict(old.state_dict())
    assert restored.lr_lambdas[0].total == 100  # what a plain restore does
    system._trainer = SimpleNamespace(
        estimated_stepping_batches=400, lr_scheduler_configs=[SimpleNamespace(scheduler=restored)]
    )
    system.on_train_start()
    assert restored.lr_lambdas[0].total == 400
    restored.step()  # step 101 of 400: well above the floor
    assert optimizer.param_groups[0]["lr"] == pytest.approx(1e-3 * CosineFactor(400, 1e-3)(101))
    assert optimizer.param_groups[0]["lr"] > 0.8e-3


def test_init_weights_starts_from_saved_weights_and_refuses_another_architecture(tmp_path):
    """`init_weights` (a fine-tune: e.g. bidirectional lite → all modes) loads every tensor of a checkpoint
    of the same architecture; a checkpoint of another architecture is refused, naming the option and field."""
    source = tiny_model()
    with torch.no_grad():
        for p in source.parameters():
            p.add_(0.01 * torch.randn_like(p))
    source.trained_modes = ("bidirectional",)
    source.save_pretrained(tmp_path / "bidirectional")
    system = AVSRSystem(tiny_model(), modes=["bidirectional", "unidirectional", "lookahead"], init_weights=str(tmp_path / "bidirectional"))
    for name, tensor in source.state_dict().items():
        torch.testing.assert_close(system.model.state_dict()[name], tensor, rtol=0, atol=0, msg=name)
    assert system.model.trained_modes is None  # the modes come from this training, not the source
    BasicAVSR.from_config("lite", **(TINY | {"skip": "bilinear"})).save_pretrained(tmp_path / "other")
    with pytest.raises(ValueError, match=r"init_weights='.*other' has another architecture \(skip: 'bilinear' there, 'bicubic' here\)"):
        AVSRSystem(tiny_model(), init_weights=str(tmp_path / "other"))
