"""`videoanyup demo`: backbone features upsampled by bilinear and VideoAnyUp, scored with the probes' measures."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import videoanyup as vau
from videoanyup.tasks.cli import main
from videoanyup.tasks.demo import backbone_choice, feature_demo as feature_demo_module
from videoanyup.tasks.demo.backbone_choice import choose_backbone, pretrained_in_cache
from videoanyup.tasks.demo.feature_demo import feature_demo
from videoanyup.tasks.probes.davis import resize_frames
from videoanyup.tasks.probes.fidelity import fidelity, reference_features
from videoanyup.tasks.probes.temporal_consistency import clip_flows, ratio, temporal_error
from videoanyup.tasks.video_io import probe, read_video

SHORT_SIDE = 28  # frames of 28 × 42: a 2 × 3 grid of DINOv2 patches


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from conftest import write_synthetic_clip

    root = tmp_path_factory.mktemp("feature_demo")
    write_synthetic_clip(root / "clip.mp4", frames=5, height=32, width=48, image="rocket", fps=25)
    torch.manual_seed(0)
    model = vau.VideoAnyUp.from_config("tiny").eval()
    model.save_pretrained(root / "weights")
    backbone = choose_backbone("dinov2_vits14", random=True, seed=1).backbone
    return root, model, backbone


def run(setup, out, **options):
    root, model, backbone = setup
    return feature_demo(
        model, backbone, backbone_description="test backbone", source=root / "clip.mp4", short_side=SHORT_SIDE,
        out=out, progress=False, **options,
    )


def test_table_is_the_probes_protocol_on_the_same_frames(setup, tmp_path):
    """Every figure of the table is what the probes' functions give on the demo's frames and upsamplers."""
    root, model, backbone = setup
    summary = run(setup, tmp_path / "d", start=1, frames=3)
    frames = resize_frames(read_video(root / "clip.mp4", 1, 3), (28, 42))  # (3, 3, 28, 42)
    with torch.inference_mode():
        lr = backbone.extract(frames[None])[0].float()  # (3, 384, 2, 3)
    reference, flows = reference_features(backbone, frames), clip_flows(frames)
    outputs = {
        "bilinear": F.interpolate(lr, size=(28, 42), mode="bilinear", align_corners=False),
        "VideoAnyUp per frame": vau.upsample(lr[None], frames[None], model=model, mode="perframe")[0],
        "VideoAnyUp bidirectional": vau.upsample(lr[None], frames[None], model=model, mode="bidirectional")[0],
    }
    bilinear_errors = temporal_error(outputs["bilinear"], flows)
    assert [row["upsampler"] for row in summary["rows"]] == list(outputs)
    for row in summary["rows"]:
        hr = outputs[row["upsampler"]]
        assert row["fidelity"] == pytest.approx(np.mean(fidelity(hr, reference)), abs=1e-6)
        assert row["temporal_error_ratio"] == pytest.approx(ratio(temporal_error(hr, flows), bilinear_errors), abs=1e-6)
        assert row["ms_per_frame"] > 0
    assert summary["rows"][0]["temporal_error_ratio"] == 1.0
    assert summary["frames"] == [1, 3] and summary["size"] == [28, 42] and summary["grid"] == [2, 3]
    assert summary["backbone"] == "test backbone"


def test_outputs_pca_picture_video_and_metrics(setup, tmp_path):
    """frame | LR | bilinear | per frame | bidirectional side by side; every frame in the video; the JSON is the summary."""
    summary = run(setup, tmp_path / "d", frames=3)
    out = tmp_path / "d"
    assert sorted(p.name for p in out.iterdir()) == [".videoanyup-output.json", "clip_pca.mp4", "clip_pca.png", "metrics.json"]
    video = probe(out / "clip_pca.mp4")
    assert (video.num_frames, video.height, video.width) == (3, 28, 5 * 42)
    from PIL import Image

    with Image.open(out / "clip_pca.png") as picture:
        assert picture.size == (5 * 42, 16 + 3 * 28)  # a title row, then the 3 frames
    assert json.loads((out / "metrics.json").read_text()) == json.loads(json.dumps(summary))
    assert summary["outputs"]["picture"] == str(out / "clip_pca.png")
    run(setup, out, frames=2, overwrite=True)  # its own earlier output is replaced
    assert probe(out / "clip_pca.mp4").num_frames == 2


def test_bad_requests_are_refused_before_any_work(setup, tmp_path, monkeypatch):
    root, _, _ = setup
    with pytest.raises(ValueError, match="start=3, frames=4: .* has 5 frames"):
        run(setup, tmp_path / "a", start=3, frames=4)
    with pytest.raises(ValueError, match="frames must be ≥ 2"):
        run(setup, tmp_path / "a", frames=1)
    with pytest.raises(ValueError, match="start must be ≥ 0"):
        run(setup, tmp_path / "a", start=-1)
    monkeypatch.setattr(feature_demo_module, "MAX_FEATURE_BYTES", 10_000)
    with pytest.raises(ValueError, match="fewer frames or a smaller short side"):
        run(setup, tmp_path / "a", frames=2)
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "mine.txt").write_text("not the demo's")
    monkeypatch.undo()
    with pytest.raises(ValueError, match="mine.txt"):
        run(setup, tmp_path / "b", frames=2, overwrite=True)
    assert not (tmp_path / "a").exists() and (tmp_path / "b" / "mine.txt").read_text() == "not the demo's"


def test_pretrained_only_from_the_cache(tmp_path, monkeypatch):
    """Without the weights in the hub cache the backbone is random (and says so); with them it would be pretrained."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    assert not pretrained_in_cache("dinov2_vits14")
    state = torch.random.get_rng_state()
    choice = choose_backbone("dinov2_vits14", seed=3)
    assert torch.equal(torch.random.get_rng_state(), state)  # the seed does not touch torch's global generator
    assert choice.weights == "random" and "seed 3" in choice.description and str(tmp_path) in choice.description
    again = choose_backbone("dinov2_vits14", seed=3).backbone.state_dict()
    assert all(torch.equal(value, again[key]) for key, value in choice.backbone.state_dict().items())
    repo_id, _, files = backbone_choice.hub_repository("dinov2_vits14")
    snapshot = tmp_path / f"models--{repo_id.replace('/', '--')}" / "snapshots" / "0123abc"
    snapshot.mkdir(parents=True)
    (snapshot.parent.parent / "refs").mkdir()
    (snapshot.parent.parent / "refs" / "main").write_text("0123abc")
    (snapshot / files[0]).write_bytes(b"weights")
    assert pretrained_in_cache("dinov2_vits14")
    with pytest.raises(ValueError, match="registered backbone"):
        pretrained_in_cache("no_such_backbone")


def test_demo_command_prints_the_table(setup, tmp_path, capsys):
    root, _, _ = setup
    argv = ["demo", "--input", str(root / "clip.mp4"), "--weights", str(root / "weights"), "--frames", "2",
            "--short-side", str(SHORT_SIDE), "--random-backbone", "--out", str(tmp_path / "d"), "--quiet"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "frames 0–1 at 28×42; DINOv2 ViT-S/14, RANDOM weights (seed 1; asked for)" in out
    for name in ("bilinear", "VideoAnyUp per frame", "VideoAnyUp bidirectional", "clip_pca.png", "clip_pca.mp4"):
        assert name in out
    assert main(argv) == 0  # a second run replaces its own outputs
    capsys.readouterr()
    assert main([*argv, "--scale", "2"]) == 2
    assert "--scale apply to the pixel demo only: add --pixels" in capsys.readouterr().err
    assert main([*argv, "--start=-1"]) == 2
    assert "--start must be ≥ 0" in capsys.readouterr().err
