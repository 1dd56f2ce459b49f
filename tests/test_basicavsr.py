import json

import pytest
import torch
import torch.nn.functional as F

from videoanyup import BasicAVSR
from videoanyup.models.basicavsr import CONFIGS

MODES = ["bidirectional", "unidirectional", "lookahead"]


def tiny(**overrides):
    fields = dict(channels=8, extract_blocks=1, propagation_blocks=1, upsample_blocks=1, deform_groups=4, offset_layers=1)
    return BasicAVSR.from_config("lite", **(fields | overrides)).eval()


def clip(t=6, h=12, w=14, b=1, dtype=torch.float32):
    return torch.rand(b, t, 3, h, w, dtype=dtype)


def test_named_configurations_and_sizes():
    paper = sum(p.numel() for p in BasicAVSR.from_config("paper").parameters())
    lite = sum(p.numel() for p in BasicAVSR.from_config("lite").parameters())
    assert abs(paper - 6.2e6) <= 0.1 * 6.2e6, paper
    assert lite < paper / 2
    assert set(CONFIGS) >= {"paper", "lite"}
    with pytest.raises(ValueError, match="name must be one of"):
        BasicAVSR.from_config("huge")
    with pytest.raises(ValueError, match="unknown BasicAVSRConfig fields"):
        BasicAVSR.from_config("lite", chanels=3)


@pytest.mark.parametrize("scale, expected", [((2, 2), (24, 28)), ((3.5, 3.5), (42, 49)), ((2.5, 3.7), (30, 52)), ((1.3, 4.0), (16, 56))])
def test_output_size_for_any_scale(scale, expected):
    model = tiny()
    with torch.no_grad():
        assert model(clip(t=2), scale=scale, mode="unidirectional").shape == (1, 2, 3, *expected)


def test_output_size_equals_size_and_single_frames():
    model = tiny()
    with torch.no_grad():
        assert model(clip(t=3), size=(31, 17)).shape == (1, 3, 3, 31, 17)
        assert model(torch.rand(2, 3, 12, 14), scale=2).shape == (2, 3, 24, 28)


def test_region_equals_crop_of_full_output():
    model = tiny()
    lr = clip(t=3)
    with torch.no_grad():
        full = model(lr, scale=(2.5, 3.7))
        crop = model(lr, scale=(2.5, 3.7), region=(4, 20, 9, 41))
    torch.testing.assert_close(crop, full[..., 4:20, 9:41], atol=1e-5, rtol=0)


def test_unidirectional_is_causal():
    model, lr = tiny(), clip(t=6)
    changed = lr.clone()
    changed[:, 3:] = torch.rand_like(changed[:, 3:])
    with torch.no_grad():
        a, b = model(lr, scale=2, mode="unidirectional"), model(changed, scale=2, mode="unidirectional")
    assert (a[:, :3] - b[:, :3]).abs().max() <= 1e-6
    assert (a[:, 3] - b[:, 3]).abs().max() > 1e-3


@pytest.mark.parametrize("k", [1, 2])
def test_lookahead_sees_at_most_k_future_frames(k):
    model, lr = tiny(lookahead=k), clip(t=7)
    t = 2
    with torch.no_grad():
        base = model(lr, scale=2, mode="lookahead")
        beyond = lr.clone()
        beyond[:, t + k + 1 :] = torch.rand_like(beyond[:, t + k + 1 :])
        within = lr.clone()
        within[:, t + k] = torch.rand_like(within[:, t + k])
        out_beyond = model(beyond, scale=2, mode="lookahead")
        out_within = model(within, scale=2, mode="lookahead")
    assert (base[:, : t + 1] - out_beyond[:, : t + 1]).abs().max() <= 1e-6
    assert (base[:, t] - out_within[:, t]).abs().max() > 1e-4


def test_bidirectional_output_depends_on_later_frames():
    model, lr = tiny(), clip(t=5)
    next_changed, last_changed = lr.clone(), lr.clone()
    next_changed[:, 1] = torch.rand_like(next_changed[:, 1])
    last_changed[:, -1] = torch.rand_like(last_changed[:, -1])
    with torch.no_grad():
        base = model(lr, scale=2, mode="bidirectional")
        by_next = model(next_changed, scale=2, mode="bidirectional")
        by_last = model(last_changed, scale=2, mode="bidirectional")
    assert (base[:, 0] - by_next[:, 0]).abs().max() > 1e-4
    # four recurrent steps away the influence of untrained weights is small, but it is there
    # (the computation is deterministic: a frame output 0 did not read would leave it bit-identical)
    assert (base[:, 0] - by_last[:, 0]).abs().max() > 1e-7


@pytest.mark.parametrize("mode, k", [("unidirectional", 2), ("lookahead", 2), ("lookahead", 1)])
def test_stream_equals_batch(mode, k):
    model = tiny(lookahead=k).double()
    lr = clip(t=7, b=2, dtype=torch.float64)
    with torch.no_grad():
        batch = model(lr, scale=(2.5, 1.5), mode=mode)
    stream = model.stream(scale=(2.5, 1.5), mode=mode)
    outputs = []
    for i in range(lr.shape[1]):
        ready = stream.push(lr[:, i])
        assert len(ready) == (1 if i >= (k if mode == "lookahead" else 0) else 0)
        outputs += ready
    outputs += stream.flush()
    streamed = torch.stack(outputs, dim=1)
    assert streamed.shape == batch.shape
    assert (streamed - batch).abs().max() <= 1e-6


def test_stream_memory_does_not_grow_with_frames():
    model = tiny()
    stream = model.stream(scale=2, mode="lookahead")
    held = []
    for _ in range(12):
        stream.push(torch.rand(1, 3, 12, 14))
        held.append(stream.state_numel())
    assert held[4] == held[-1]  # constant once the look-ahead window is full


def test_stream_default_mode_is_a_streaming_mode_the_weights_serve():
    """`stream()` with no mode runs the model's own mode when it streams, else the first streaming mode the
    weights were trained for; weights trained for no streaming mode are refused, naming what they serve."""
    model = tiny()  # config mode "bidirectional", untrained: every mode allowed
    assert model.stream(scale=2).mode == "unidirectional"
    assert tiny(mode="lookahead").stream(scale=2).mode == "lookahead"
    model.trained_modes = ("bidirectional", "lookahead")
    assert model.stream(scale=2).mode == "lookahead"
    model.trained_modes = ("bidirectional",)
    with pytest.raises(ValueError, match=r"these weights were trained for \['bidirectional'\] only, and none of them streams; a stream needs one of"):
        model.stream(scale=2)


def test_stream_refuses_bidirectional_and_bad_frames():
    model = tiny()
    with pytest.raises(ValueError, match="cannot stream"):
        model.stream(scale=2, mode="bidirectional")
    stream = model.stream(scale=2, mode="unidirectional")
    stream.push(torch.rand(1, 3, 12, 14))
    with pytest.raises(ValueError, match=r"frame must keep the stream's shape \(1, 3, 12, 14\)"):
        stream.push(torch.rand(1, 3, 12, 16))


@pytest.mark.parametrize("skip", ["bilinear", "bicubic"])
def test_zero_initialised_residual_path_reproduces_the_skip_interpolation(skip):
    model = tiny(skip=skip)
    torch.nn.init.zeros_(model.upsampler.to_rgb.weight)
    torch.nn.init.zeros_(model.upsampler.to_rgb.bias)
    lr = clip(t=3)
    with torch.no_grad():
        out = model(lr, scale=(2.5, 3.7))
    expected = F.interpolate(lr[0], size=(30, 52), mode=skip, align_corners=False)
    torch.testing.assert_close(out[0], expected, atol=5e-6, rtol=0)


@pytest.mark.parametrize(
    "make_input, kwargs, message",
    [
        (lambda: torch.rand(3, 12, 14), dict(scale=2), r"lr must have shape \(B, T, 3, h, w\)"),
        (lambda: torch.rand(1, 1, 1, 3, 12, 14), dict(scale=2), r"lr must have shape \(B, T, 3, h, w\)"),
        (lambda: torch.rand(1, 2, 2, 12, 14), dict(scale=2), r"lr must have shape .* with 3 channels, got C = 2"),
        (lambda: torch.rand(1, 0, 3, 12, 14), dict(scale=2), r"lr must have shape .* B, T, h, w >= 1"),
        (lambda: torch.full((1, 2, 3, 12, 14), float("nan")), dict(scale=2), "lr contains NaN"),
        (lambda: torch.rand(1, 2, 3, 12, 14), dict(scale=0), "scale must be finite and > 0"),
        (lambda: torch.rand(1, 2, 3, 12, 14), dict(scale=(2, -1)), "scale must be finite and > 0"),
        (lambda: torch.rand(1, 2, 3, 12, 14), dict(), "give exactly one of scale"),
        (lambda: torch.rand(1, 2, 3, 12, 14), dict(scale=2, size=(24, 28)), "give exactly one of scale"),
        (lambda: torch.rand(1, 2, 3, 12, 14), dict(size=(24, 0)), r"size must be a pair \(H, W\) of positive integers"),
        (lambda: torch.rand(1, 2, 3, 12, 14), dict(scale=2, mode="sideways"), "mode must be one of"),
        (lambda: torch.rand(1, 2, 3, 12, 14).long(), dict(scale=2), "lr must be a floating-point tensor"),
    ],
)
def test_bad_input_raises_value_error_naming_the_argument(make_input, kwargs, message):
    with pytest.raises(ValueError, match=message):
        tiny()(make_input(), **kwargs)


def test_save_and_load_round_trip_records_modes(tmp_path):
    model = tiny()
    model.trained_modes = ("unidirectional",)
    model.save_pretrained(tmp_path / "ckpt")
    record = json.loads((tmp_path / "ckpt" / "config.json").read_text())
    assert record["trained_modes"] == ["unidirectional"] and record["channels"] == 8
    loaded = BasicAVSR.from_pretrained(tmp_path / "ckpt").eval()
    lr = clip(t=3)
    with torch.no_grad():
        torch.testing.assert_close(loaded(lr, scale=2, mode="unidirectional"), model(lr, scale=2, mode="unidirectional"))
    with pytest.raises(ValueError, match=r"trained for \['unidirectional'\] only"):
        loaded(lr, scale=2, mode="bidirectional")
    with pytest.raises(ValueError, match=r"trained for \['unidirectional'\] only"):
        loaded.stream(scale=2, mode="lookahead")
    with torch.no_grad():
        tiny()(lr, scale=2, mode="bidirectional")  # untrained weights accept every mode


def test_from_pretrained_is_strict_and_clear(tmp_path):
    from safetensors.torch import load_file, save_file

    tiny().save_pretrained(tmp_path / "ckpt")
    state = load_file(str(tmp_path / "ckpt" / "model.safetensors"))
    state.pop("upsampler.to_rgb.bias")
    state["upsampler.extra"] = torch.zeros(1)
    save_file(state, str(tmp_path / "ckpt" / "model.safetensors"))
    with pytest.raises(ValueError, match=r"missing keys: upsampler\.to_rgb\.bias; unexpected keys: upsampler\.extra"):
        BasicAVSR.from_pretrained(tmp_path / "ckpt")
    tiny(channels=16).save_pretrained(tmp_path / "wide")
    (tmp_path / "wide" / "config.json").write_text((tmp_path / "ckpt" / "config.json").read_text())
    with pytest.raises(ValueError, match="shape mismatches"):
        BasicAVSR.from_pretrained(tmp_path / "wide")
    with pytest.raises(ValueError, match="neither a folder"):
        BasicAVSR.from_pretrained(tmp_path / "nothing-here")


def test_training_step_reaches_every_trainable_part():
    model = tiny().train()
    lr = clip(t=3)
    out = model(lr, scale=(2.0, 2.5), mode="bidirectional", region=(0, 12, 5, 20))
    out.mean().backward()
    for name in ["extractor.head.weight", "propagation.backward_branch.head.weight", "propagation.forward_branch.head.weight", "prior.band_weights", "upsampler.kernel.head.weight", "spynet.basic_module.5.basic_module.4.conv.weight", "propagation.forward_align.deform.offset_head.weight"]:
        grad = dict(model.named_parameters())[name].grad
        assert grad is not None and grad.abs().sum() > 0, name


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("scale", [2, 3.7, (2.5, 3.5)])
def test_network_output_equals_the_dense_reference_upsampler(mode, scale):
    """The whole network, every mode, integer / non-integer / asymmetric scales, whole frames and a region,
    against the same network whose upsampler is the dense per-pixel reference of `test_hyper_upsampler`
    (the evaluation before its blocks were precomputed equalled it to 1e-5 too). Tiles of 16 split the frames and the phases."""
    from test_hyper_upsampler import dense_reference

    model = tiny(tile_size=16)
    lr = clip(t=3, h=10, w=12)
    reference = tiny(tile_size=16)
    reference.load_state_dict(model.state_dict())
    reference.upsampler.forward = lambda state, frame, size, region=None: dense_reference(reference.upsampler, state, frame, size, region)
    with torch.no_grad():
        got = model(lr, scale=scale, mode=mode)
        torch.testing.assert_close(got, reference(lr, scale=scale, mode=mode), atol=1e-5, rtol=0)
        region = (3, got.shape[-2] - 2, 5, got.shape[-1] - 1)
        torch.testing.assert_close(model(lr, scale=scale, mode=mode, region=region), reference(lr, scale=scale, mode=mode, region=region), atol=1e-5, rtol=0)
