"""The `--compile` options reach the models: `upscale` and `features` hand them to the models'
streams, the training systems compile the network's forward in place. Cheap: the streams' compile itself is
pinned in `test_basicavsr_compile.py` and `test_videoanyup_compile.py`; here the streams run eagerly and
only record what they were asked for."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import videoanyup
from videoanyup.backbones.registry import build_backbone
from videoanyup.layers.guidance_encoder import resize_guidance
from videoanyup.models.basicavsr import BasicAVSR
from videoanyup.models.videoanyup import VideoAnyUp
from videoanyup.tasks.avsr.system import AVSRSystem
from videoanyup.tasks.cli import build_parser, main
from videoanyup.tasks.features import load_features
from videoanyup.tasks.upsampler.system import UpsamplerSystem
from videoanyup.tasks.video_io import probe, read_video

from conftest import TINY_BASICAVSR as TINY, save_tiny_basicavsr  # noqa: E402
from conftest import write_synthetic_clip  # noqa: E402


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("compile")
    save_tiny_basicavsr(root / "sr")
    VideoAnyUp.from_config("tiny").save_pretrained(root / "up")
    write_synthetic_clip(root / "clip", frames=4, height=28, width=28)
    return root


@pytest.fixture
def streams(monkeypatch):
    """Record the `compile` every stream is asked for; run the streams eagerly."""
    asked = []
    for cls in (BasicAVSR, VideoAnyUp):
        original = cls.stream

        def recording(self, *args, compile=False, _original=original, **kwargs):
            asked.append((type(self).__name__, compile))
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(cls, "stream", recording)
    return asked


def test_the_option_parses():
    parser = build_parser()
    up = ["upscale", "in", "out.mp4", "--scale", "2"]
    assert parser.parse_args(up).compile is False
    assert parser.parse_args(up + ["--compile"]).compile is True
    assert parser.parse_args(up + ["--compile", "eager"]).compile == "eager"
    feats = ["features", "in", "-o", "out", "--backbone", "b"]
    assert parser.parse_args(feats).compile is False
    assert parser.parse_args(feats + ["--compile"]).compile is True


def test_upscale_hands_compile_to_the_stream(root, tmp_path, streams):
    argv = ["upscale", str(root / "clip"), str(tmp_path / "up.mp4"), "--scale", "2", "--weights", str(root / "sr"), "--quiet"]
    assert main(argv + ["--mode", "unidirectional", "--compile", "eager"]) == 0
    assert streams == [("BasicAVSR", "eager")]
    assert probe(tmp_path / "up.mp4").num_frames == 4


def test_compile_needs_a_streaming_mode(root, tmp_path, capsys):
    argv = ["upscale", str(root / "clip"), str(tmp_path / "up.mp4"), "--scale", "2", "--weights", str(root / "sr"), "--quiet"]
    assert main(argv + ["--mode", "bidirectional", "--compile"]) == 2
    assert "--compile" in capsys.readouterr().err and not (tmp_path / "up.mp4").exists()
    argv = ["features", str(root / "clip"), "-o", str(tmp_path / "f"), "--backbone", "dinov2_vits14", "--random-backbone",
            "--weights", str(root / "up"), "--mode", "bidirectional", "--quiet", "--compile"]
    assert main(argv) == 2
    assert "--compile" in capsys.readouterr().err and not (tmp_path / "f").exists()


def test_features_compile_upsamples_through_the_stream(root, tmp_path, streams):
    out = tmp_path / "f"
    assert main(["features", str(root / "clip"), "-o", str(out), "--backbone", "dinov2_vits14", "--random-backbone",
                 "--weights", str(root / "up"), "--mode", "unidirectional", "--chunk-frames", "3", "--quiet",
                 "--compile", "eager"]) == 0
    assert streams == [("VideoAnyUp", "eager")]
    torch.manual_seed(0)  # what the command computes, in memory: resized clip → random backbone → upsample
    backbone = build_backbone("dinov2_vits14", random=True)
    video = read_video(root / "clip")
    video = resize_guidance(video, backbone.input_size(*video.shape[-2:]))
    with torch.no_grad():
        lr = backbone.extract(video[None])
    expected = videoanyup.upsample(lr, video[None], model=VideoAnyUp.from_pretrained(root / "up"), mode="unidirectional")[0]
    written = torch.from_numpy(np.asarray(load_features(out)[:], dtype=np.float32))
    assert written.shape == expected.shape == (4, 384, 28, 28)
    torch.testing.assert_close(written, expected, atol=2e-3 * expected.abs().max().item(), rtol=1e-3)


def test_training_systems_compile_the_forward_in_place():
    sr = BasicAVSR.from_config("lite", **TINY)
    keys = list(sr.state_dict())
    assert AVSRSystem(sr)._compiled_call_impl is None and sr._compiled_call_impl is None
    system = AVSRSystem(sr, compile="eager")
    assert system.model._compiled_call_impl is not None
    assert list(system.model.state_dict()) == keys  # checkpoints keep their keys
    up = VideoAnyUp.from_config("tiny")
    assert UpsamplerSystem(up, random_backbones=True, compile=True).model._compiled_call_impl is not None
    with pytest.raises(ValueError, match="compile"):
        AVSRSystem(BasicAVSR.from_config("lite", **TINY), compile=1)
