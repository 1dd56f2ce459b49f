"""The public calls: `upsample`, `upsample_stream` and the torch.hub entry points."""

import importlib.util
from pathlib import Path

import pytest
import torch

from videoanyup.api import upsample, upsample_stream
from videoanyup.models.videoanyup import VideoAnyUp


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return VideoAnyUp.from_config("tiny")  # left in train mode with gradients on: upsample must cope


def test_without_a_model_the_bundled_default_is_used_once():
    import videoanyup.api as api

    feats, video = torch.randn(1, 2, 5, 3, 4), torch.rand(1, 2, 3, 12, 16)
    out = upsample(feats, video, mode="perframe")
    first = api.default_model()
    assert first is api.default_model() and not first.training  # loaded once, eval mode
    with torch.no_grad():
        expected = VideoAnyUp.from_pretrained("default").eval()(feats, video, mode="perframe")
    assert torch.allclose(out, expected, atol=1e-6)


def test_without_a_model_or_bundled_weights_the_error_says_how_to_pass_one(monkeypatch):
    import videoanyup.api as api

    monkeypatch.setattr(api, "_default_model", None)
    monkeypatch.setattr(api, "bundled_names", lambda kind: [])
    with pytest.raises(RuntimeError, match=r"model=VideoAnyUp\.from_pretrained"):
        upsample(torch.randn(1, 4, 3, 3), torch.rand(1, 3, 9, 9))


def test_default_size_is_the_video_and_scale_is_relative_to_the_grid(model):
    feats, video = torch.randn(2, 3, 6, 4, 5), torch.rand(2, 3, 3, 16, 21)
    out = upsample(feats, video, model=model)
    assert out.shape == (2, 3, 6, 16, 21)
    assert not out.requires_grad and out.is_inference()
    assert upsample(feats, video, model=model, scale=(3, 2.5)).shape == (2, 3, 6, 12, 13)
    assert upsample(feats, video, model=model, size=(7, 30)).shape == (2, 3, 6, 7, 30)


def test_single_image_is_one_frame(model):
    feats, video = torch.randn(1, 8, 4, 4), torch.rand(1, 3, 14, 14)
    image = upsample(feats, video, model=model, mode="perframe")
    clip = upsample(feats[:, None], video[:, None], model=model, mode="perframe")
    assert image.shape == (1, 8, 14, 14) and torch.allclose(image, clip[:, 0], atol=1e-6)


def test_memory_options_do_not_change_the_result(model):
    feats, video = torch.randn(1, 4, 5, 4, 4), torch.rand(1, 4, 3, 12, 12)
    whole = upsample(feats, video, model=model)
    chunked = upsample(feats, video, model=model, chunk_frames=1, query_tile=5)
    assert torch.allclose(whole, chunked, atol=1e-5)


def test_stream_matches_upsample(model):
    feats, video = torch.randn(1, 3, 5, 4, 4), torch.rand(1, 3, 3, 12, 12)
    stream = upsample_stream(model=model, mode="unidirectional")
    outs = [o for t in range(3) for o in stream.push(feats[:, t], video[:, t])] + stream.flush()
    assert torch.allclose(torch.stack(outs, 1), upsample(feats, video, model=model, mode="unidirectional"), atol=1e-5)


def test_bad_inputs_name_the_argument(model):
    with pytest.raises(ValueError, match="feats"):
        upsample(torch.randn(4, 3, 3), torch.rand(1, 3, 9, 9), model=model)
    with pytest.raises(ValueError, match="video"):
        upsample(torch.randn(1, 4, 3, 3), torch.rand(1, 1, 9, 9), model=model)
    with pytest.raises(ValueError, match="model"):
        upsample(torch.randn(1, 4, 3, 3), torch.rand(1, 3, 9, 9), model=torch.nn.Identity())


def load_hubconf():
    """`hubconf.py` sits at the repository root, outside the installed package."""
    spec = importlib.util.spec_from_file_location("hubconf", Path(__file__).resolve().parents[1] / "hubconf.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_hub_entry_points_take_keyword_only_pretrained():
    hubconf = load_hubconf()
    net = hubconf.videoanyup(pretrained=False, config="tiny")
    assert isinstance(net, VideoAnyUp) and not net.training
    with pytest.raises(TypeError):
        hubconf.videoanyup(False)  # noqa: FBT003 - pretrained is keyword-only
    bundled = hubconf.videoanyup(pretrained=True)  # the bundled default weights
    assert not bundled.training and "bidirectional" in bundled.trained_modes
    assert hubconf.basicavsr(pretrained=True).trained_modes == ("bidirectional", "unidirectional", "lookahead")  # the bundled lite
    with pytest.raises(ValueError, match="bundled"):
        hubconf.videoanyup(pretrained=True, config="large")  # no such bundled weights
