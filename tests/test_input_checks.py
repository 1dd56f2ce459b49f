"""Issue 15, items 6 and 8: out-of-range video, float64 / float16 input, and checkpoint files that cannot be read.

Each error names the argument or the file; each test fails on the code before the fix.
"""

from __future__ import annotations

import json

import pytest
import torch

from videoanyup.api import upsample
from videoanyup.models.basicavsr import BasicAVSR
from videoanyup.models.videoanyup import VideoAnyUp
from videoanyup.validation import UNIT_RANGE_TOLERANCE

from conftest import TINY_BASICAVSR as TINY  # noqa: E402


@pytest.fixture(scope="module")
def avsr():
    torch.manual_seed(0)
    return BasicAVSR.from_config("lite", **TINY).eval()


@pytest.fixture(scope="module")
def anyup():
    torch.manual_seed(0)
    return VideoAnyUp.from_config("tiny").eval()


# -- 6. video outside [0, 1] ------------------------------------------------------------------------------
@pytest.mark.parametrize("low, high, shown", [(0.0, 255.0, r"\[0, 255\]"), (-1.0, 1.0, r"\[-1, 1\]")])
def test_out_of_range_video_is_refused_by_both_networks(avsr, anyup, low, high, shown):
    lr = torch.rand(1, 2, 3, 6, 8) * (high - low) + low
    lr[0, 0, 0, 0, :2] = torch.tensor([low, high])
    with pytest.raises(ValueError, match=rf"lr must hold RGB values in \[0, 1\], got values in {shown}"):
        avsr(lr, scale=2)
    with pytest.raises(ValueError, match=rf"frame must hold RGB values in \[0, 1\], got values in {shown}"):
        avsr.stream(scale=2, mode="unidirectional").push(lr[:, 0])
    video = torch.rand(1, 2, 3, 32, 32) * (high - low) + low
    video[0, 0, 0, 0, :2] = torch.tensor([low, high])
    with pytest.raises(ValueError, match=rf"video must hold RGB values in \[0, 1\], got values in {shown}"):
        upsample(torch.randn(1, 2, 5, 4, 4), video, model=anyup)


def test_float_error_around_the_unit_range_is_tolerated(avsr):
    lr = torch.rand(1, 2, 3, 6, 8)
    lr[0, 0, 0, 0, 0], lr[0, 1, 0, 0, 0] = -UNIT_RANGE_TOLERANCE / 2, 1 + UNIT_RANGE_TOLERANCE / 2
    assert avsr(lr, scale=2).shape == (1, 2, 3, 12, 16)
    lr[0, 1, 0, 0, 0] = 1 + 2 * UNIT_RANGE_TOLERANCE
    with pytest.raises(ValueError, match="lr must hold RGB values"):
        avsr(lr, scale=2)


# -- 8. float64 / float16 input to BasicAVSR, as VideoAnyUp accepts them -------------------------------
@pytest.mark.parametrize("dtype", [torch.float64, torch.float16])
def test_basicavsr_accepts_float64_and_float16_like_videoanyup(avsr, anyup, dtype):
    lr = torch.rand(1, 3, 3, 6, 8)
    with torch.no_grad():
        reference = avsr(lr, scale=2)
        out = avsr(lr.to(dtype), scale=2)
    assert out.dtype == dtype and out.shape == reference.shape
    tolerance = 1e-5 if dtype == torch.float64 else 2e-2  # float16 input carries its own rounding
    assert torch.allclose(out.float(), reference, atol=tolerance)
    stream = avsr.stream(scale=2, mode="unidirectional")
    streamed = [o for t in range(3) for o in stream.push(lr[:, t].to(dtype))] + stream.flush()
    assert all(o.dtype == dtype for o in streamed)
    assert torch.allclose(torch.stack(streamed, 1).float(), avsr(lr, scale=2, mode="unidirectional"), atol=tolerance)
    video = torch.rand(1, 3, 3, 16, 16)  # VideoAnyUp: features in that dtype give output in that dtype
    assert upsample(torch.randn(1, 3, 5, 4, 4, dtype=dtype), video, model=anyup).dtype == dtype
    feats = torch.randn(1, 3, 5, 4, 4)  # and guidance video in that dtype is computed in the weights' dtype
    with torch.no_grad():
        for mode in ("perframe", "unidirectional"):
            ours = upsample(feats, video.to(dtype), model=anyup, mode=mode)
            assert ours.dtype == torch.float32
            assert torch.allclose(ours, upsample(feats, video.to(dtype).float(), model=anyup, mode=mode), atol=1e-5)
        stream = anyup.stream(mode="unidirectional")
        streamed = [o for t in range(3) for o in stream.push(feats[:, t], video[:, t].to(dtype))] + stream.flush()
        assert torch.allclose(torch.stack(streamed, 1), upsample(feats, video.to(dtype).float(), model=anyup, mode="unidirectional"), atol=1e-5)


# -- 8. checkpoint files that cannot be read name the file ------------------------------------------------
@pytest.fixture
def saved(avsr, tmp_path):
    avsr.save_pretrained(tmp_path / "w")
    return tmp_path / "w"


@pytest.mark.parametrize("damage", ["empty", "truncated", "garbage"])
def test_unreadable_safetensors_names_the_file(saved, damage):
    weights = saved / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes({"empty": b"", "truncated": data[: len(data) // 2], "garbage": b"\x00" * 8 + b"not json" * 10}[damage])
    with pytest.raises(ValueError, match=rf"cannot read weights '{weights}': the file is empty, truncated or not a safetensors file"):
        BasicAVSR.from_pretrained(saved)


@pytest.mark.parametrize("text, message", [
    ("{not json", "it is not valid JSON"),
    ("[1, 2]", "must hold a JSON object of config fields, got list"),
    (None, "describes a network that cannot be built"),
])
def test_bad_config_json_names_the_file(saved, text, message):
    config = saved / "config.json"
    if text is None:  # valid JSON, impossible network
        text = json.dumps(json.loads(config.read_text()) | {"channels": -3})
    config.write_text(text)
    with pytest.raises(ValueError, match=rf"'{config}'.*{message}|{message}.*'{config}'"):
        BasicAVSR.from_pretrained(saved)
