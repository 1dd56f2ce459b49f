"""VideoAnyUp training: the losses, the crop objective's geometry, the temporal term, the per-step draws,
exact mid-epoch resume, a 2-process CPU DDP run through `videoanyup train-upsampler`."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

L = pytest.importorskip("lightning")

from videoanyup.backbones.base import Backbone  # noqa: E402
from videoanyup.models.videoanyup import CONFIGS, VideoAnyUp  # noqa: E402
from videoanyup.tasks.upsampler.data import UpsamplerDataModule  # noqa: E402
from videoanyup.tasks.upsampler.losses import feature_distance, feature_loss, non_occluded, temporal_loss  # noqa: E402
from videoanyup.tasks.upsampler.objective import crop_resize, crop_targets, lr_features, take_windows  # noqa: E402
from videoanyup.tasks.upsampler.system import UpsamplerSystem, step_draws  # noqa: E402


class PoolBackbone(Backbone):
    """A stub "backbone" whose features are the mean RGB of each p × p patch (identity normalisation)."""

    def __init__(self, patch_size: int) -> None:
        super().__init__(name="pool", patch_size=patch_size, embed_dim=3, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))

    def _encode(self, frames):
        return F.avg_pool2d(frames, self.patch_size)

    _embed = _encode


# -- losses ---------------------------------------------------------------------------------------
def test_feature_loss_zero_on_equal_and_invariances():
    pred, target = torch.randn(2, 16, 5, 6), torch.randn(2, 16, 5, 6)
    assert feature_loss(target, target) == pytest.approx(0.0, abs=1e-6)
    base = feature_loss(pred, target)
    assert base > 0.1
    scale = torch.rand(2, 1, 5, 6) * 5 + 0.1  # a positive factor per vector
    assert feature_loss(pred, target * scale) == pytest.approx(float(base), rel=1e-5)
    perm = torch.randperm(16)
    assert feature_loss(pred[:, perm], target[:, perm]) == pytest.approx(float(base), rel=1e-5)
    assert feature_distance(pred, -pred).min() > 1.0  # opposite vectors are far apart
    with pytest.raises(ValueError, match="same shape"):
        feature_loss(pred, target[:, :8])


@pytest.mark.parametrize("zoom, patch", [(2, 8), (4, 4), (8, 2)])
def test_crop_target_is_the_image_region_of_the_window(zoom, patch):
    """With a pooling "backbone", the target of a window equals the image pooled at the zoomed grid, cut at
    that window: the crop covers exactly the window's image region."""
    size, grid = 64, 4
    images = torch.rand(3, 3, size, size)
    backbone = PoolBackbone(patch)
    windows = torch.tensor([[0, 0], [zoom * grid - grid, 1], [zoom * grid // 2 - 1, zoom * grid - grid]])
    target = crop_targets(backbone, images, windows, grid=grid, zoom=zoom)  # (3, 3, g, g)
    ideal = F.avg_pool2d(images, size // (zoom * grid))  # (3, 3, z·g, z·g)
    torch.testing.assert_close(target, take_windows(ideal, windows, grid), rtol=0, atol=1e-6)
    lr = lr_features(backbone, images, grid)
    torch.testing.assert_close(lr, F.avg_pool2d(F.interpolate(images, size=grid * patch, mode="bilinear", antialias=True), patch))


def test_crop_resize_fractional_boxes_agree_with_whole_pixel_crops():
    images = torch.rand(1, 3, 40, 40)
    whole = crop_resize(images, torch.tensor([[4.0, 6.0, 14.0, 16.0]]), 20)  # exact crop, upsampled
    nudged = crop_resize(images, torch.tensor([[4.0 + 1e-4, 6.0, 14.0 + 1e-4, 16.0]]), 20)  # sampled
    # the border samples differ: the exact crop clamps there, the sampled box reads the neighbouring pixels
    torch.testing.assert_close(whole[..., 1:-1, 1:-1], nudged[..., 1:-1, 1:-1], atol=2e-3, rtol=0)


def test_temporal_term_static_clip_zero_moving_clip_with_wrong_output_positive(synthetic_clip, tmp_path):
    """Flows from the bundled SPyNet on 128² guidance, the output grid at half of it (as in training)."""
    system = UpsamplerSystem(VideoAnyUp.from_config("tiny"), backbones=["dinov2_vits14"], random_backbones=True)
    frames = synthetic_clip(tmp_path / "m", frames=3, height=128, width=128, image="coffee", step=(4, 6))
    moving = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255  # (T, 3, 128, 128)
    static = moving[:1].expand(3, -1, -1, -1)
    results = {}
    for name, clip in (("static", static), ("moving", moving)):
        flows, visible = system.clip_flows(clip[None], (64, 64))
        assert visible.mean() > 0.2, name  # the bundled SPyNet is not exact: ~0.5 px noise on a static pair
        right = F.interpolate(clip, size=(64, 64), mode="area")[None]  # "features" that move with the content
        wrong = right[:, :1].expand_as(right)  # features frozen at frame 0
        results[name] = float(temporal_loss(right, flows, visible)), float(temporal_loss(wrong, flows, visible))
    assert results["static"][0] == results["static"][1] < 2e-3  # static: right == wrong, and ~0
    good, bad = results["moving"]
    # a wrong output is penalised: SPyNet's flow on a 128² crop of this smooth picture is rough (the right output
    # keeps some loss; the bundled weights give 4.8×), so the margin is 3×, and 30× the static clip's
    assert bad > 3 * good and bad > 30 * results["static"][0], results
    # the forward–backward check flags inconsistent flows
    fw, bw = torch.zeros(1, 2, 8, 8), torch.zeros(1, 2, 8, 8)
    bw[..., 2:4, 2:4] = 5.0
    assert non_occluded(fw, bw)[0, 0, 2, 2] == 0 and non_occluded(fw, bw)[0, 0, 6, 6] == 1


def test_step_draws_are_deterministic_in_seed_and_step():
    options = dict(backbones=["a", "b", "c"], grids=[8, 10], zooms=[2, 4, 8], modes=["bidirectional"])
    first = step_draws(3, 17, 0, 4, **options)
    again = step_draws(3, 17, 0, 4, **options)
    assert {k: first[k] for k in ("backbone", "grid", "zoom")} == {k: again[k] for k in ("backbone", "grid", "zoom")}
    assert torch.equal(first["windows"], again["windows"])
    picks = {step_draws(3, s, 0, 4, **options)["backbone"] for s in range(40)}
    assert picks == {"a", "b", "c"}
    zooms = {step_draws(3, s, 0, 4, **options)["zoom"] for s in range(40)}
    assert zooms == {2, 4, 8}
    assert any(step_draws(4, s, 0, 4, **options)["backbone"] != step_draws(3, s, 0, 4, **options)["backbone"] for s in range(10))
    for s in range(20):
        d = step_draws(3, s, 0, 4, **options)
        assert d["windows"].min() >= 0 and d["windows"].max() <= d["zoom"] * d["grid"] - d["grid"]


# -- training -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    from conftest import write_synthetic_clip

    root = tmp_path_factory.mktemp("upsampler_data")
    write_synthetic_clip(root / "clips" / "a", frames=4, height=40, width=48)
    write_synthetic_clip(root / "clips" / "b", frames=4, height=40, width=48, image="coffee", step=(-1, 2))
    return root


SYSTEM = dict(backbones=["dinov2_vits14"], random_backbones=True, grids=[2, 3], zooms=[2, 4], grad_clip_norm=1.0, seed=5)


def data_module(root: Path, **overrides) -> UpsamplerDataModule:
    kwargs = dict(
        clip_sources=[str(root / "clips")], image_sources=["skimage:astronaut", "skimage:coffee"], image_size=24,
        num_frames=2, image_batch=2, clip_batch=1, clip_every=3, steps_per_epoch=4, num_workers=1, seed=3,
    )
    kwargs.update(overrides)
    return UpsamplerDataModule(**kwargs)


def trainer(root: Path, **overrides) -> "L.Trainer":
    kwargs = dict(
        accelerator="cpu", devices=1, max_steps=6, logger=False, enable_progress_bar=False, enable_model_summary=False,
        limit_val_batches=0, num_sanity_val_steps=0, use_distributed_sampler=False, default_root_dir=str(root),
    )
    kwargs.update(overrides)
    return L.Trainer(**kwargs)


def test_resume_from_mid_epoch_checkpoint_is_bit_identical(data_root, tmp_path):
    """4 batches per epoch (clip batches at global steps 0 and 3), checkpoint after step 3, end at step 6."""
    L.seed_everything(0)
    first = UpsamplerSystem(VideoAnyUp.from_config("tiny"), **SYSTEM)
    checkpoint = L.pytorch.callbacks.ModelCheckpoint(dirpath=tmp_path / "ckpt", every_n_train_steps=3, save_top_k=-1)
    trainer(tmp_path, callbacks=[checkpoint]).fit(first, data_module(data_root))
    mid = tmp_path / "ckpt" / "epoch=0-step=3.ckpt"
    assert mid.is_file(), sorted(p.name for p in (tmp_path / "ckpt").iterdir())

    L.seed_everything(1)  # a different global RNG state must not matter
    second = UpsamplerSystem(VideoAnyUp.from_config("tiny"), **SYSTEM)
    trainer(tmp_path, enable_checkpointing=False).fit(second, data_module(data_root), ckpt_path=str(mid))

    state_mid = torch.load(mid, map_location="cpu", weights_only=False)
    assert state_mid["loops"]["fit_loop"]["epoch_loop.batch_progress"]["current"]["completed"] < 4  # mid-epoch
    assert all(k.startswith("model.") for k in state_mid["state_dict"])  # no backbone, no loss SPyNet
    assert state_mid["videoanyup"]["trained_modes"] == ["bidirectional"]
    start = VideoAnyUp.from_config("tiny").state_dict()
    moved = [k for k, v in first.model.state_dict().items() if v.is_floating_point() and not torch.equal(v, start[k])]
    assert moved, "nothing trained"
    for key, value in first.model.state_dict().items():
        assert torch.equal(value, second.model.state_dict()[key]), key


DDP_CONFIG = """
seed_everything: 0
model:
  model:
    class_path: videoanyup.models.videoanyup.VideoAnyUp
    init_args:
      config: {TINY}
  backbones: [dinov2_vits14, dino_vits16]
  random_backbones: true
  grids: [2]
  zooms: [2, 4]
  modes: [bidirectional, unidirectional]
data:
  clip_sources: [{root}/clips]
  image_sources: ["skimage:astronaut"]
  val_sources: ["skimage:coffee"]
  image_size: 24
  num_frames: 2
  image_batch: 1
  clip_batch: 1
  clip_every: 2
  steps_per_epoch: 2
  num_workers: 0
trainer:
  accelerator: cpu
  devices: {devices}
  strategy: {strategy}
  max_steps: 2
  log_every_n_steps: 1
  val_check_interval: 2
  check_val_every_n_epoch: null
  num_sanity_val_steps: 0
  use_distributed_sampler: false
  enable_progress_bar: false
  enable_model_summary: false
  enable_checkpointing: false
  default_root_dir: {out}
logging:
  save_dir: {out}
  name: run
  wandb: "off"
"""


def test_cli_ddp_two_processes_trains_and_saves(data_root, tmp_path):
    """`videoanyup train-upsampler --config …` parses the config and runs 2 steps on 2 CPU processes
    (gloo); the weights written at the end load and record the trained modes."""
    import csv
    from dataclasses import asdict

    config = tmp_path / "ddp.yaml"
    config.write_text(
        DDP_CONFIG.format(
            TINY=json.dumps(asdict(CONFIGS["tiny"])), root=data_root, out=tmp_path / "out", devices=2,
            strategy="ddp_find_unused_parameters_true",
        )
    )
    env = dict(os.environ, OMP_NUM_THREADS="1", WANDB_MODE="offline", PYTHONWARNINGS="ignore", HF_HUB_OFFLINE="1")
    run = subprocess.run(
        [sys.executable, "-m", "videoanyup.tasks.cli", "train-upsampler", "--config", str(config)],
        capture_output=True, text=True, timeout=240, env=env, cwd=tmp_path,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    log_dir = tmp_path / "out" / "run" / "version_0"
    with open(log_dir / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert any(r.get("train/temporal") for r in rows) and any(r.get("train/consistency") for r in rows)
    assert any(r.get("val/crop") for r in rows)
    step_times = [float(r["perf/step_s"]) for r in rows if r.get("perf/step_s")]  # StepTimer, in every run
    assert len(step_times) == 2 and all(t > 0 for t in step_times)
    assert "speed: 2 steps timed" in run.stdout
    model = VideoAnyUp.from_pretrained(log_dir / "videoanyup")
    assert model.trained_modes == ("bidirectional", "unidirectional")


def test_bad_arguments():
    with pytest.raises(ValueError, match="model must be a VideoAnyUp"):
        UpsamplerSystem(torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="modes"):
        UpsamplerSystem(VideoAnyUp.from_config("tiny"), modes=["sideways"])
    with pytest.raises(ValueError, match="clip samples need at least 2"):
        UpsamplerDataModule(num_frames=1, clip_every=2)


def test_supersampled_prediction_is_pooled_to_the_loss_grid():
    """With k = 2 the network is asked for the 2·z·g grid and the crop term sees its k×k area means."""
    system = UpsamplerSystem(
        VideoAnyUp.from_config("tiny"), backbones=["dinov2_vits14"], random_backbones=True, grids=[2], zooms=[2],
        supersample=[2], consistency_weight=0.0, seed=1,
    )
    asked, produced = [], []

    def network(lr, frames, *, size, mode):  # stands in for VideoAnyUp.forward
        asked.append(tuple(size))
        produced.append(torch.randn(*lr.shape[:3], *size))
        return produced[-1]

    system.model.forward = network
    frames = torch.rand(1, 1, 3, 16, 16)
    draws = step_draws(1, 0, 0, 1, backbones=["dinov2_vits14"], grids=[2], zooms=[2], modes=["bidirectional"], supersample=[2])
    assert draws["supersample"] == 2
    terms = system.losses(frames, draws)
    assert asked == [(8, 8)]  # k · z · g = 2 · 2 · 2
    target = crop_targets(system.backbone("dinov2_vits14"), frames[:, 0], draws["windows"], grid=2, zoom=2)
    pooled = F.avg_pool2d(produced[0][:, 0], 2)  # (1, C, 4, 4): the loss grid
    assert torch.allclose(terms["crop"], feature_loss(take_windows(pooled, draws["windows"], 2), target))
    with pytest.raises(ValueError, match="supersample"):
        UpsamplerSystem(VideoAnyUp.from_config("tiny"), supersample=[0])


@pytest.mark.parametrize("path", sorted((Path(__file__).resolve().parents[1] / "configs" / "upsampler").glob("*.yaml")), ids=lambda p: p.stem)
def test_every_upsampler_config_names_a_valid_architecture(path):
    """The architecture in each shipped recipe is a valid `VideoAnyUpConfig` and its backbones valid specs (a
    misspelt field fails here, not minutes into a training); the recipes of the bundled `default` name exactly `CONFIGS["default"]`, their first
    stages the same without the neighbour windows."""
    import dataclasses

    import yaml

    from videoanyup.models.videoanyup import VideoAnyUpConfig

    from videoanyup.backbones.spec import check_backbone_spec

    recipe = yaml.safe_load(path.read_text())["model"]
    config = VideoAnyUpConfig(**recipe["model"]["init_args"]["config"])
    for name in recipe.get("backbones", []):  # every spec parses (a typo fails here)
        assert check_backbone_spec(name, "backbones") == name
    if path.stem in ("cpu_default", "cpu_default_events", "gpu_default"):
        assert config == CONFIGS["default"]
    if path.stem in ("cpu_single_frame", "gpu_single_frame"):
        assert config == dataclasses.replace(CONFIGS["default"], neighbour_window=0, flow_scale=2)


def test_warm_start_widens_layers_given_new_inputs_and_new_tensors_get_their_own_learning_rate(tmp_path):
    """A fine-tune from weights of a network without the neighbour windows (stage 1) or with fewer inputs to a
    layer: every shared tensor is loaded, a layer with more inputs keeps the old weights on the old inputs and zeros
    on the new ones, the new tensors keep their initialisation; both learn at new_lr_scale × lr; a checkpoint with
    a tensor the model lacks is refused."""
    torch.manual_seed(0)
    single = VideoAnyUp.from_config("tiny", neighbour_window=0)
    single.save_pretrained(tmp_path / "single")
    model = VideoAnyUp.from_config("tiny")
    system = UpsamplerSystem(model, **SYSTEM, init_weights=str(tmp_path / "single"), new_lr_scale=10.0)
    assert system.new_tensors and all(n.split(".")[0] in ("temporal", "fusion") for n in system.new_tensors)
    loaded = {k: v for k, v in single.state_dict().items() if not k.startswith("spynet.")}  # SPyNet: its own
    for key, value in loaded.items():
        assert torch.equal(model.state_dict()[key], value), key
    system.trainer = type("T", (), {"estimated_stepping_batches": 10})()
    groups = system.configure_optimizers()["optimizer"].param_groups
    assert [g["lr"] for g in groups] == pytest.approx([system.hparams.lr, 10 * system.hparams.lr])
    new = dict(model.named_parameters())
    assert {id(p) for p in groups[1]["params"]} == {id(new[n]) for n in system.new_tensors if n in new}
    # a layer that now takes more inputs: the fusion's first layer, saved with 3 fewer input channels
    narrow = VideoAnyUp.from_config("tiny")
    state = narrow.state_dict()
    key = "fusion.net.0.weight"
    state[key] = state[key][:, :-3].clone()
    from videoanyup.checkpoint import save_checkpoint

    save_checkpoint(tmp_path / "narrow", _StateHolder(state), dict(dataclasses.asdict(narrow.config), trained_modes=None))
    widened = VideoAnyUp.from_config("tiny")
    system = UpsamplerSystem(widened, **SYSTEM, init_weights=str(tmp_path / "narrow"))
    assert key in system.new_tensors
    weight = widened.state_dict()[key]
    assert torch.equal(weight[:, :-3], state[key]) and (weight[:, -3:] == 0).all()
    with pytest.raises(ValueError, match="new_lr_scale must be > 0"):
        UpsamplerSystem(VideoAnyUp.from_config("tiny"), **SYSTEM, new_lr_scale=0.0)
    bad = VideoAnyUp.from_config("tiny")
    bad.register_buffer("extra_state_probe", torch.zeros(1))
    bad.save_pretrained(tmp_path / "bad")
    with pytest.raises(ValueError, match=r"tensors the model lacks: \['extra_state_probe'\]"):
        UpsamplerSystem(VideoAnyUp.from_config("tiny"), **SYSTEM, init_weights=str(tmp_path / "bad"))


class _StateHolder(torch.nn.Module):
    """A module whose state dict is the given one (to write a checkpoint of an older layout)."""

    def __init__(self, state):
        super().__init__()
        self._state = state

    def state_dict(self, *args, **kwargs):
        return self._state
