"""VideoAnyUp: convexity properties in every mode, chunking, causality, streaming, checkpoints, input checks."""

import pytest
import torch

from videoanyup.functional.grid import axis_phases
from tiny_networks import tiny_net
from videoanyup.models.videoanyup import CONFIGS, VideoAnyUp

MODES = ["bidirectional", "unidirectional", "lookahead", "perframe"]


@pytest.fixture(scope="module")
def model():
    """The default architecture at tiny widths, every learned part acting."""
    return tiny_net(seed=0)


@pytest.fixture(scope="module")
def nets(model):
    """The shipped architecture and the ablation without neighbour windows."""
    return {"neighbours": model, "own-window": tiny_net(neighbours=False, seed=1)}


def clip(b=1, t=3, c=5, h=4, w=5, size=(11, 13), seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, t, c, h, w, generator=g), torch.rand(b, t, 3, *size, generator=g)


def run(model, feats, video, **options):
    with torch.no_grad():
        return model(feats, video, **options)


@pytest.mark.parametrize("channels", [1, 3, 384, 768, 1024])
def test_any_channel_count_with_the_same_weights(model, channels):
    feats, video = clip(t=1, c=channels, h=3, w=3, size=(7, 8))
    out = run(model, feats, video, mode="perframe")
    assert out.shape == (1, 1, channels, 7, 8) and torch.isfinite(out).all()


@pytest.mark.parametrize("grid", [(1, 1), (1, 7), (6, 2), (9, 16)])
@pytest.mark.parametrize("mode", MODES)
def test_any_patch_grid(model, grid, mode):
    feats, video = clip(t=2, c=4, h=grid[0], w=grid[1], size=(2 * grid[0] + 3, 3 * grid[1] + 1))
    out = run(model, feats, video, mode=mode)
    assert out.shape == (1, 2, 4, 2 * grid[0] + 3, 3 * grid[1] + 1) and torch.isfinite(out).all()
    constant = run(model, torch.full_like(feats, 0.7), video, mode=mode)
    assert (constant - 0.7).abs().max() <= 1e-5


def test_default_configuration_at_a_backbone_scale():
    torch.manual_seed(0)
    net = VideoAnyUp.from_config("default").eval()
    feats, video = clip(t=2, c=384, h=4, w=4, size=(56, 56))
    out = run(net, feats, video)
    assert out.shape == (1, 2, 384, 56, 56)
    assert torch.allclose(run(net, feats * 3.0, video), out * 3.0, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "options, expected",
    [
        (dict(), (11, 13)),  # the video's size
        (dict(scale=2.5), (10, 13)),  # round(2.5·4), round(2.5·5) half up
        (dict(scale=(1.5, 3.7)), (6, 19)),  # asymmetric, non-integer
        (dict(size=(9, 23)), (9, 23)),
        (dict(size=(3, 4)), (3, 4)),  # smaller than the grid
    ],
)
def test_any_output_size(model, options, expected):
    feats, video = clip(t=2, h=4, w=5)
    assert run(model, feats, video, **options).shape == (1, 2, 5, *expected)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("variant", ["neighbours", "own-window"])
def test_constant_maps_stay_constant(nets, mode, variant):
    net = nets[variant]
    _, video = clip(b=2)
    value = torch.tensor([3.0, -1.5, 0.0, 42.0, 1e-3]).view(1, 1, 5, 1, 1)
    feats = value.expand(2, 3, 5, 4, 5).contiguous()
    out = run(net, feats, video, mode=mode, scale=(2.5, 1.7))
    assert ((out - value).abs() <= 1e-5 + 1e-6 * value.abs()).all()  # float rounding of up to ~85 candidates


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("variant", ["neighbours", "own-window"])
def test_channel_permutation_and_positive_scaling(nets, mode, variant):
    net = nets[variant]
    feats, video = clip(c=9)
    perm = torch.randperm(9, generator=torch.Generator().manual_seed(3))
    out = run(net, feats, video, mode=mode)
    assert torch.allclose(run(net, feats[:, :, perm], video, mode=mode), out[:, :, perm], atol=1e-6)
    for s in (0.05, 7.0):
        assert torch.allclose(run(net, feats * s, video, mode=mode), out * s, rtol=1e-5, atol=1e-6 * s)


@pytest.mark.parametrize("mode", MODES)
def test_single_frame_output_within_its_window(model, mode):
    feats, video = clip(t=1, c=6, h=5, w=6, size=(13, 17))
    out = run(model, feats, video, mode=mode)[0, 0]
    h, w, r = 5, 6, model.config.window // 2
    rows, cols = axis_phases(h, 13).nearest, axis_phases(w, 17).nearest
    for y in range(13):
        for x in range(17):
            window = feats[0, 0, :, max(0, rows[y] - r) : rows[y] + r + 1, max(0, cols[x] - r) : cols[x] + r + 1]
            assert bool((out[:, y, x] >= window.amin((1, 2)) - 1e-6).all())
            assert bool((out[:, y, x] <= window.amax((1, 2)) + 1e-6).all())


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("variant", ["neighbours", "own-window"])
def test_chunked_equals_unchunked(nets, mode, variant):
    net = nets[variant]
    feats, video = clip(b=2, t=4)
    whole = run(net, feats, video, mode=mode, scale=(2.5, 2.2))
    for chunk_frames, query_tile in [(1, None), (3, 7), (None, 3)]:
        chunked = run(net, feats, video, mode=mode, scale=(2.5, 2.2), chunk_frames=chunk_frames, query_tile=query_tile)
        assert torch.allclose(chunked, whole, atol=1e-5)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("variant", ["neighbours", "own-window"])
def test_iter_chunks_concatenate_to_forward(nets, mode, variant):
    net = nets[variant]
    feats, video = clip(b=2, t=5)
    whole = run(net, feats, video, mode=mode, scale=(2.5, 2.2))
    for chunk_frames in (1, 3, 5):
        with torch.no_grad():
            parts = list(net.iter_chunks(feats, video, mode=mode, scale=(2.5, 2.2), chunk_frames=chunk_frames))
            same_chunks = net(feats, video, mode=mode, scale=(2.5, 2.2), chunk_frames=chunk_frames)
        assert [t0 for t0, _ in parts] == list(range(0, 5, chunk_frames))
        assert [tuple(p.shape) for _, p in parts] == [(2, min(chunk_frames, 5 - t0), 5, 10, 11) for t0, _ in parts]
        joined = torch.cat([p for _, p in parts], dim=1)
        assert (joined - same_chunks).abs().max() <= 1e-6
        assert (joined - whole).abs().max() <= 1e-6


def test_iter_chunks_are_fresh_tensors_and_inputs_are_checked_at_the_call(model):
    feats, video = clip(t=4)
    whole = run(model, feats, video, mode="unidirectional")
    with torch.no_grad():
        chunks = []
        for _, part in model.iter_chunks(feats, video, mode="unidirectional", chunk_frames=2):
            chunks.append(part.clone())
            part.fill_(1e6)  # a caller reusing the buffer must not change the next chunk
    assert torch.allclose(torch.cat(chunks, dim=1), whole, atol=1e-6)
    for options, name in [(dict(chunk_frames=0), "chunk_frames"), (dict(query_tile=0), "query_tile"),
                          (dict(mode="sideways"), "mode")]:
        with pytest.raises(ValueError, match=name):
            model.iter_chunks(feats, video, **options)  # no next() needed
    with pytest.raises(ValueError, match="video"):
        model.iter_chunks(feats, video[:, :2])


@pytest.mark.parametrize("mode", MODES)
def test_one_frame_equals_the_image_call(model, mode):
    feats, video = clip(b=2, t=1)
    clip_out = run(model, feats, video, mode=mode)
    image_out = run(model, feats[:, 0], video[:, 0], mode=mode)
    assert image_out.shape == (2, 5, 11, 13)
    assert torch.allclose(clip_out[:, 0], image_out, atol=1e-6)


def changed_after(feats, video, t):
    feats, video = feats.clone(), video.clone()
    feats[:, t + 1 :] = torch.randn_like(feats[:, t + 1 :]) * 10
    video[:, t + 1 :] = torch.rand_like(video[:, t + 1 :])
    return feats, video


@pytest.mark.parametrize("variant", ["neighbours", "own-window"])
def test_unidirectional_is_causal(nets, variant):
    net = nets[variant]
    feats, video = clip(t=5)
    out = run(net, feats, video, mode="unidirectional")
    for t in (0, 2):
        other = run(net, *changed_after(feats, video, t), mode="unidirectional")
        assert (other[:, : t + 1] - out[:, : t + 1]).abs().max() <= 1e-6
        assert (other[:, t + 1 :] - out[:, t + 1 :]).abs().max() > 1e-3


def test_lookahead_sees_k_frames_ahead_only(model):
    k = model.config.lookahead
    feats, video = clip(t=6)
    out = run(model, feats, video, mode="lookahead")
    other = run(model, *changed_after(feats, video, 0 + k), mode="lookahead")
    assert (other[:, :1] - out[:, :1]).abs().max() <= 1e-6
    assert (other[:, 1:2] - out[:, 1:2]).abs().max() > 1e-6  # frame 1 reads frame 1 + k


def test_perframe_output_depends_on_its_own_frame_only(model):
    feats, video = clip(t=4)
    out = run(model, feats, video, mode="perframe")
    for t in range(4):
        alone = run(model, feats[:, t], video[:, t], mode="perframe")
        assert (alone - out[:, t]).abs().max() <= 1e-6
    shuffled = run(model, feats.flip(1), video.flip(1), mode="perframe")
    assert (shuffled.flip(1) - out).abs().max() <= 1e-6


@pytest.mark.parametrize("mode", ["unidirectional", "lookahead", "perframe"])
@pytest.mark.parametrize("variant", ["neighbours", "own-window"])
def test_stream_equals_offline(nets, mode, variant):
    net = nets[variant]
    feats, video = clip(b=2, t=5)
    offline = run(net, feats, video, mode=mode, scale=2)
    stream = net.stream(mode=mode, scale=2)
    outs = []
    for t in range(5):
        ready = stream.push(feats[:, t], video[:, t])
        assert len(ready) == (1 if mode != "lookahead" or t >= net.config.lookahead else 0)
        outs += ready
    outs += stream.flush()
    assert torch.allclose(torch.stack(outs, 1), offline, atol=1e-5)


def test_stream_refuses_bidirectional_and_changing_shapes(model):
    with pytest.raises(ValueError, match="bidirectional"):
        model.stream(mode="bidirectional")
    stream = model.stream(mode="unidirectional")
    stream.push(torch.randn(1, 5, 4, 5), torch.rand(1, 3, 11, 13))
    with pytest.raises(ValueError, match="shapes"):
        stream.push(torch.randn(1, 5, 4, 6), torch.rand(1, 3, 11, 13))


def test_save_and_load_round_trip(model, tmp_path):
    model.save_pretrained(tmp_path / "ckpt")
    loaded = VideoAnyUp.from_pretrained(tmp_path / "ckpt").eval()
    assert loaded.config == model.config
    feats, video = clip()
    assert torch.equal(run(loaded, feats, video), run(model, feats, video))


def test_trained_modes_are_enforced(model, tmp_path):
    trained = VideoAnyUp(model.config, trained_modes=["unidirectional"])
    trained.load_state_dict(model.state_dict())
    trained.save_pretrained(tmp_path / "uni")
    loaded = VideoAnyUp.from_pretrained(tmp_path / "uni")
    assert loaded.trained_modes == ("unidirectional",)
    feats, video = clip(t=2)
    run(loaded, feats, video, mode="unidirectional")
    with pytest.raises(ValueError, match="trained for"):
        run(loaded, feats, video, mode="bidirectional")


def test_named_configurations():
    assert {"default", "tiny"} <= set(CONFIGS)
    with pytest.raises(ValueError, match="name"):
        VideoAnyUp.from_config("huge")
    with pytest.raises(ValueError, match="unknown"):
        VideoAnyUp.from_config("tiny", windw=5)
    with pytest.raises(ValueError, match="mode"):
        VideoAnyUp.from_config("tiny", mode="sideways")


@pytest.mark.parametrize(
    "feats, video, name",
    [
        (torch.randn(2, 3, 5, 4, 5), torch.rand(1, 3, 3, 11, 13), "same B and T"),
        (torch.randn(1, 3, 5, 4, 5), torch.rand(1, 2, 3, 11, 13), "same B and T"),
        (torch.randn(5, 4, 5), torch.rand(1, 3, 11, 13), "feats"),
        (torch.randn(1, 1, 1, 5, 4, 5), torch.rand(1, 1, 3, 11, 13), "feats"),
        (torch.randn(1, 5, 4, 5), torch.rand(3, 11, 13), "video"),
        (torch.randn(1, 2, 5, 4, 5), torch.rand(1, 2, 4, 11, 13), "video"),
        (torch.randn(1, 2, 5, 4, 5), torch.rand(1, 2, 1, 11, 13), "video"),
        (torch.full((1, 5, 4, 5), float("nan")), torch.rand(1, 3, 11, 13), "feats"),
        (torch.randn(1, 5, 4, 5), torch.full((1, 3, 11, 13), float("inf")), "video"),
        (torch.randn(1, 5, 8, 8), torch.rand(1, 3, 6, 16), "smaller than the features"),
    ],
)
def test_bad_input_raises_value_error_naming_the_argument(model, feats, video, name):
    with pytest.raises(ValueError, match=name):
        run(model, feats, video)


def test_bad_options_raise_value_error(model):
    feats, video = clip(t=1)
    for options, name in [
        (dict(size=(10, 10), scale=2), "exactly one"),
        (dict(scale=-1), "scale"),
        (dict(size=(0, 4)), "size"),
        (dict(mode="sideways"), "mode"),
        (dict(chunk_frames=0), "chunk_frames"),
        (dict(query_tile=0), "query_tile"),
    ]:
        with pytest.raises(ValueError, match=name):
            run(model, feats, video, **options)


@pytest.mark.parametrize("mode", ["bidirectional", "lookahead"])
def test_gradients_reach_every_part_in_training(mode):
    net = tiny_net().train()
    feats, video = clip(t=3)
    net(feats, video, mode=mode, chunk_frames=2).square().mean().backward()
    for part in ("agnostic.filters", "guidance.stem.weight", "attention.query.weight", "attention.key.weight",
                 "attention.prior.head.weight", "key_net.head.weight", "propagation.forward_branch.head.weight",
                 "temporal.delta_bias", "temporal.offset.0.weight", "temporal.displacement.net.0.weight",
                 "temporal.agreement.net.0.weight", "fusion.net.0.weight", "shot.net.0.weight"):
        grad = net.get_parameter(part).grad
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0, part


@pytest.mark.parametrize("mode", MODES)
def test_training_mode_and_eval_mode_give_the_same_output(model, mode):
    feats, video = clip(b=2, t=4)
    assert not model.training
    evaluated = run(model, feats, video, mode=mode)
    model.train()
    try:
        trained = run(model, feats, video, mode=mode)
    finally:
        model.eval()
    assert torch.equal(trained, evaluated)


def test_no_layer_depends_on_the_training_flag():
    net = VideoAnyUp.from_config("default")
    kinds = {type(m).__name__ for m in net.modules()}
    assert not kinds & {"Dropout", "Dropout2d", "BatchNorm1d", "BatchNorm2d", "InstanceNorm2d"}
