"""`videoanyup upscale` / `evaluate`, chunked and streamed inference, loggers, and clean failures."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
import yaml

from videoanyup.tasks.avsr.degradation import bicubic_upscale, degrade
from videoanyup.tasks.avsr.inference import upscale_frames
from videoanyup.tasks.cli import main
from videoanyup.tasks.metrics import psnr, quantize
from videoanyup.tasks.video_io import probe, read_video

from conftest import save_tiny_basicavsr  # noqa: E402


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from conftest import write_synthetic_clip

    root = tmp_path_factory.mktemp("cli")
    model = save_tiny_basicavsr(root / "weights")
    write_synthetic_clip(root / "clip", frames=5, height=15, width=19)  # odd sizes
    write_synthetic_clip(root / "clip.mp4", frames=5, height=16, width=20, image="coffee", fps=30)
    write_synthetic_clip(root / "eval" / "a", frames=3, height=24, width=28, image="rocket")
    write_synthetic_clip(root / "eval" / "b", frames=3, height=24, width=28, image="chelsea")
    return root, model


def test_chunked_bidirectional_and_streamed_online_equal_whole_clip(setup):
    _, model = setup
    lr = torch.rand(1, 7, 3, 8, 10)
    with torch.no_grad():
        whole = model(lr, size=(19, 23), mode="bidirectional")[0]
        online = model(lr, size=(19, 23), mode="unidirectional")[0]
    chunked = torch.stack(list(upscale_frames(model, lr[0], size=(19, 23), chunk=3, overlap=7)))
    assert torch.allclose(chunked, whole, atol=1e-5)  # context covers the clip: same result
    short = list(upscale_frames(model, lr[0], size=(19, 23), chunk=3, overlap=1))
    assert len(short) == 7 and torch.allclose(short[0], whole[0], atol=0.2)
    streamed = torch.stack(list(upscale_frames(model, lr[0], size=(19, 23), mode="unidirectional")))
    assert torch.allclose(streamed, online, atol=1e-5)


def test_upscale_folder_to_mp4_and_mp4_to_folder(setup, tmp_path, capsys):
    root, _ = setup
    out = tmp_path / "up.mp4"
    assert main(["upscale", str(root / "clip"), str(out), "--scale", "2.5", "--weights", str(root / "weights"),
                 "--chunk", "2", "--overlap", "1", "--quiet", "--lossless"]) == 0
    info = probe(out)
    assert (info.num_frames, info.height, info.width, info.fps) == (5, 38, 48, 25)  # round(2.5·15), round(2.5·19)
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["output"] == [38, 48] and summary["mode"] == "bidirectional"

    assert main(["upscale", str(root / "clip.mp4"), str(tmp_path / "frames"), "--size", "33x41", "--mode", "unidirectional",
                 "--weights", str(root / "weights"), "--quiet"]) == 0
    info = probe(tmp_path / "frames")
    assert (info.num_frames, info.height, info.width) == (5, 33, 41)
    assert main(["upscale", str(root / "clip.mp4"), str(tmp_path / "odd.mp4"), "--scale", "2x3",
                 "--weights", str(root / "weights"), "--quiet"]) == 0
    odd = probe(tmp_path / "odd.mp4")
    assert (odd.height, odd.width, odd.fps) == (32, 60, 30)  # the input's frame rate
    assert sorted(p.name for p in tmp_path.iterdir()) == ["frames", "odd.mp4", "up.mp4"]


def _fails(argv, capsys, match):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert match in err, err


def test_bad_inputs_fail_clearly_without_partial_output(setup, tmp_path, capsys):
    from PIL import Image

    root, _ = setup
    weights = ["--weights", str(root / "weights"), "--quiet"]
    (tmp_path / "empty").mkdir()
    _fails(["upscale", str(tmp_path / "empty"), str(tmp_path / "o1.mp4"), "--scale", "2", *weights], capsys, "holds no frames")
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    Image.fromarray(np.zeros((10, 12, 3), np.uint8)).save(mixed / "0.png")
    Image.fromarray(np.zeros((11, 12, 3), np.uint8)).save(mixed / "1.png")
    _fails(["upscale", str(mixed), str(tmp_path / "o2.mp4"), "--scale", "2", *weights], capsys, "mixed sizes")
    data = (root / "clip.mp4").read_bytes()
    (tmp_path / "cut.mp4").write_bytes(data[: len(data) * 2 // 3])
    _fails(["upscale", str(tmp_path / "cut.mp4"), str(tmp_path / "o3"), "--scale", "2", *weights], capsys, "cut.mp4")
    (tmp_path / "junk.mp4").write_bytes(b"not a video at all" * 50)
    _fails(["upscale", str(tmp_path / "junk.mp4"), str(tmp_path / "o4.mp4"), "--scale", "2", *weights], capsys, "junk.mp4")
    broken = tmp_path / "broken"  # decodes fine until the last frame: fails after output started
    broken.mkdir()
    for i in range(4):
        Image.fromarray(np.full((10, 12, 3), 60 * i, np.uint8)).save(broken / f"{i}.png")
    last = (broken / "3.png").read_bytes()
    (broken / "3.png").write_bytes(last[: len(last) // 2])
    _fails(["upscale", str(broken), str(tmp_path / "o5.mp4"), "--scale", "2", "--chunk", "1", "--overlap", "0", *weights], capsys, "3.png")
    other = tmp_path / "other_weights"
    other.mkdir()
    (other / "model.safetensors").write_bytes((root / "weights" / "model.safetensors").read_bytes())
    config = json.loads((root / "weights" / "config.json").read_text())
    (other / "config.json").write_text(json.dumps(config | {"channels": 16}))
    _fails(["upscale", str(root / "clip"), str(tmp_path / "o6.mp4"), "--scale", "2", "--weights", str(other)], capsys, "shape mismatches")
    _fails(["upscale", str(root / "clip"), str(tmp_path / "o7.mp4"), "--scale", "2", "--mode", "lookahead", *weights], capsys, "trained for")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken", "cut.mp4", "empty", "junk.mp4", "mixed", "other_weights"]


def test_evaluate_table_json_figures_and_protocol(setup, tmp_path, capsys):
    root, _ = setup
    argv = ["evaluate", "--data", str(root / "eval"), "--scales", "2,2.5x3", "--weights", str(root / "weights"),
            "--modes", "bidirectional,unidirectional", "--json", str(tmp_path / "r.json"), "--figures", str(tmp_path / "fig"), "--quiet"]
    assert main(argv) == 0
    table = capsys.readouterr().out
    assert "bicubic PSNR" in table and "x2.5x3" in table and "ALL" in table
    results = json.loads((tmp_path / "r.json").read_text())
    assert set(results["clips"]) == {"a", "b"}
    assert set(results["average"]["x2"]) == {"bicubic", "bidirectional", "unidirectional"}
    assert results["average"]["x2"]["bicubic"]["frames"] == 6
    assert (tmp_path / "fig" / "psnr_vs_scale.png").is_file() and (tmp_path / "fig" / "crops_a_x2.5x3.png").is_file()
    # the protocol by hand for the bicubic baseline of clip "a" at 2.5 × 3
    hr = read_video(root / "eval" / "a")
    lr = degrade(hr, (9, 9), quantize_8bit=True)  # floor(24 / 2.5), floor(28 / 3)
    expected = psnr(quantize(bicubic_upscale(lr, (24, 28))), hr, crop_border=4).mean().item()
    assert results["clips"]["a"]["x2.5x3"]["bicubic"]["psnr"] == pytest.approx(expected)
    assert main(["evaluate", "--data", str(root / "eval" / "b"), "--scales", "2", "--weights", "none", "--quiet"]) == 0
    assert "bicubic" in capsys.readouterr().out


def test_missing_weights_message(setup, tmp_path, capsys, monkeypatch):
    import videoanyup.checkpoint

    monkeypatch.setattr(videoanyup.checkpoint, "BUNDLED_WEIGHTS", tmp_path / "no_bundled_weights")
    root, _ = setup
    _fails(["upscale", str(root / "clip"), str(tmp_path / "o.mp4"), "--scale", "2", "--quiet"], capsys, "--weights")
    assert not (tmp_path / "o.mp4").exists()


def test_loggers_offline_without_a_key(monkeypatch, tmp_path):
    from lightning.pytorch.loggers import CSVLogger, WandbLogger

    from videoanyup.tasks.logging import build_loggers

    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    loggers = build_loggers(save_dir=str(tmp_path), name="t")
    assert isinstance(loggers[0], CSVLogger) and isinstance(loggers[1], WandbLogger)
    assert loggers[1]._offline is True
    assert [type(x) for x in build_loggers(save_dir=str(tmp_path), wandb="off")] == [CSVLogger]
    with pytest.raises(ValueError, match="WANDB_API_KEY"):
        build_loggers(save_dir=str(tmp_path), wandb="online")
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert build_loggers(save_dir=str(tmp_path))[1]._offline is False


@pytest.mark.parametrize("name", ["lite_cpu", "basicavsr_reds"])
def test_configs_mirror_the_constructors(name, tmp_path, capsys):
    """Both shipped configs parse and instantiate (on the CPU, without data) into the intended objects, their
    checkpoints in the recipe's folder or where `--checkpoint_dir` says."""
    from pathlib import Path

    from videoanyup.models.basicavsr import CONFIGS
    from videoanyup.tasks.avsr.degradation import parse_scale, scale_label
    from videoanyup.tasks.avsr.train import build_cli

    config = Path(__file__).resolve().parents[1] / "configs" / "avsr" / f"{name}.yaml"
    moved = ["--checkpoint_dir", str(tmp_path / "elsewhere")] if name == "lite_cpu" else []
    cli = build_cli([
        "--config", str(config), "--trainer.accelerator=cpu", "--trainer.devices=1", "--trainer.strategy=auto",
        f"--trainer.default_root_dir={tmp_path}", f"--logging.save_dir={tmp_path}", "--logging.wandb=off", *moved,
    ])
    recipe_folder = yaml.safe_load(config.read_text())["trainer"]["callbacks"][0]["init_args"]["dirpath"]
    expected_folder = os.path.realpath(tmp_path / "elsewhere" if moved else recipe_folder)
    assert [c.dirpath for c in cli.trainer.checkpoint_callbacks] == [expected_folder]
    if moved:  # nothing to move: exit 2 naming the option
        with pytest.raises(SystemExit) as stop:
            build_cli(["--config", str(config), "--trainer.accelerator=cpu", "--trainer.enable_checkpointing=false",
                       "--trainer.callbacks=[]", "--logging.wandb=off", f"--logging.save_dir={tmp_path}", *moved])
        assert stop.value.code == 2 and "--checkpoint_dir" in capsys.readouterr().err
    expected = CONFIGS["lite" if name == "lite_cpu" else "paper"]
    assert cli.model.model.config == expected
    assert cli.model.hparams.spynet_lr_mult == 0.25 and cli.model.hparams.lr == (4e-4 if name == "lite_cpu" else 2e-4)
    assert cli.model.val_labels == [scale_label(parse_scale(s)) for s in cli.config.data.val_scales]
    if name == "basicavsr_reds":
        assert (cli.datamodule.num_frames, cli.datamodule.lr_patch, cli.datamodule.gt_patch) == (15, 80, 80)
        assert cli.model.hparams.spynet_freeze_steps == 5000


@pytest.mark.parametrize("value", ["false", "wandb"])
def test_a_bad_wandb_mode_is_a_usage_error_naming_the_option(value, tmp_path, capsys):
    """`--logging.wandb false` was a traceback from inside the trainer's set-up; now the parser refuses it."""
    from pathlib import Path

    from videoanyup.tasks.avsr.train import build_cli

    config = Path(__file__).resolve().parents[1] / "configs" / "avsr" / "lite_cpu.yaml"
    with pytest.raises(SystemExit) as stop:
        build_cli(["--config", str(config), "--trainer.accelerator=cpu", f"--logging.save_dir={tmp_path}",
                   f"--logging.wandb={value}"])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and "logging.wandb" in err and "offline" in err
