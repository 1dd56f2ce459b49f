"""The backbone contract (DESIGN.md §5, STYLE.md 7): one parametrised test over every registered backbone.

Random weights only (no downloads here); inputs of 2 × 3 multiples of the stride keep even ViT-L quick, and
each backbone is built once per session (`built`). Levels, specs and the traced geometry: test_backbone_levels.py.
"""

import functools
import socket
import time

import pytest
import timm
import torch
import torch.nn.functional as F

from videoanyup.backbones import (
    BACKBONES,
    MAX_PATCH_EMBED_COSINE,
    Backbone,
    TimmBackbone,
    build_backbone,
    check_not_degenerate,
    list_backbones,
    offline,
    patch_embedding_cosine,
    snap_to_patch,
)

EXPECTED = {  # name: (stride, channels, size multiple, offset of cell 0 in input pixels; None: the cells tile)
    "dinov2_vits14": (14, 384, 14, None),
    "dinov2_vitb14": (14, 768, 14, None),
    "dinov2_vitl14": (14, 1024, 14, None),
    "dinov2_vits14_reg": (14, 384, 14, None),
    "dino_vits16": (16, 384, 16, None),
    "clip_vitb16": (16, 768, 16, None),
    "siglip2_vitb16": (16, 768, 16, None),
    "vit_b16": (16, 768, 16, None),
    "hf_dinov2_vits14": (14, 384, 14, None),
    "dinov3_vits16": (16, 384, 16, None),
    "dinov3_vitb16": (16, 768, 16, None),
    "radio_v3_vitb16": (16, 768, 16, None),
    "dinov3_convnext_tiny": (16, 384, 16, None),  # unpadded 4×4 stem and 2×2 downsampling: a tiling
    "convnext_tiny": (16, 384, 16, None),
    "resnet50": (16, 1024, 16, 0.5),  # padded 7×7/2 stem, 3×3/2 pool and 3×3/2 convs: centre 16·i (index)
    "sam2_hiera_small": (16, 384, 32, 6.5),  # padded 7×7/4 patch embedding then 2×2 pools: 16·i + 6 (index)
}


@functools.lru_cache(maxsize=None)
def built(name: str) -> Backbone:
    """Each backbone is built once per test session (random weights, seed 0)."""
    torch.manual_seed(0)
    return build_backbone(name, random=True, chunk=2)


@pytest.fixture(scope="module")
def small():
    return built("dinov2_vits14")


def test_every_expected_backbone_is_registered():
    assert list_backbones() == list(EXPECTED)


@pytest.mark.parametrize("name", list(EXPECTED))
def test_backbone_contract(name):
    backbone = built(name)
    stride, c, multiple, offset = EXPECTED[name]
    assert isinstance(backbone, Backbone)
    spec = BACKBONES[name]
    assert (backbone.stride, backbone.patch_size, backbone.embed_dim) == (stride, stride, c) == (spec.stride, spec.stride, spec.embed_dim)
    assert backbone.size_multiple == multiple and len(backbone.levels) == 1
    assert len(backbone.mean) == len(backbone.std) == 3 and all(s > 0 for s in backbone.std)
    assert not any(param.requires_grad for param in backbone.parameters())

    # two input sizes: 2m+2 × 3m-2 pixels round to 2m × 3m, and a 3m × 2m frame is kept
    m = multiple
    for (height, width), resized in (((2 * m + 2, 3 * m - 2), (2 * m, 3 * m)), ((3 * m, 2 * m), (3 * m, 2 * m))):
        grid = (resized[0] // stride, resized[1] // stride)
        assert backbone.input_size(height, width) == resized
        assert backbone.grid_size(height, width) == grid
        video = torch.rand(1, 2, 3, height, width)
        feats = backbone.extract(video)  # chunk = 2 = T: one forward
        assert feats.shape == (1, 2, c, *grid)
        assert torch.isfinite(feats).all()
        assert feats.std() > 0 and not torch.allclose(feats[:, 0], feats[:, 1])
        # the geometry it declares, on the caller's frame (the resize maps input pixels onto it)
        geometry = backbone.geometry(height, width)
        assert geometry.grid == grid and geometry.frame == (height, width)
        scale = (height / resized[0], width / resized[1])
        cell = stride / 2 if offset is None else offset
        assert geometry.stride == pytest.approx((stride * scale[0], stride * scale[1]))
        assert geometry.offset == pytest.approx((cell * scale[0], cell * scale[1]))
        assert geometry.is_tiling() == (offset is None)

    # chunking does not change the result (to float error, relative to the features' scale)
    atol = 1e-4 * max(1.0, float(feats.abs().max()))
    torch.testing.assert_close(backbone.extract(video, chunk=1), feats, rtol=1e-4, atol=atol)
    # an image is a one-frame video
    image_feats = backbone.extract(video[:, 1])
    assert image_feats.shape == (1, 1, c, *grid)
    torch.testing.assert_close(image_feats[:, 0], feats[:, 1], rtol=1e-4, atol=atol)

    # not degenerate: build_backbone checked that a cell sees beyond its own square (context_change); a token
    # model's blocks also change its patch embedding
    if backbone.has_patch_embedding:
        embed = backbone.embed_patches(video)
        assert embed.shape == feats.shape
        cosine = F.cosine_similarity(feats, embed, dim=2).mean()
        assert cosine < MAX_PATCH_EMBED_COSINE
    else:
        with pytest.raises(ValueError, match="no patch embedding"):
            backbone.embed_patches(video)


def test_timm_dinov2_default_init_is_degenerate_and_detected():
    """The trap of DESIGN.md §5.6: timm's own random DINOv2 (LayerScale 1e-5) is its patch embedding."""
    model = timm.create_model("vit_small_patch14_dinov2.lvd142m", pretrained=False, dynamic_img_size=True).eval()
    backbone = TimmBackbone(model, name="degenerate")
    video = torch.rand(1, 1, 3, 28, 42)
    assert patch_embedding_cosine(backbone, video) > 0.99
    with pytest.raises(RuntimeError, match="degenerate"):
        check_not_degenerate(backbone, video)


def test_random_dinov2_has_layer_scale_one(small):
    gammas = [m.gamma for m in small.modules() if type(m).__name__ == "LayerScale"]
    assert len(gammas) == 24  # 12 blocks × (attention, MLP)
    assert all(torch.equal(g, torch.ones_like(g)) for g in gammas)


@pytest.mark.parametrize("name", ["dinov2_vits14", "hf_dinov2_vits14"])
def test_random_weights_follow_the_seed(name):
    torch.manual_seed(3)
    first = build_backbone(name, random=True).state_dict()
    torch.manual_seed(3)
    second = build_backbone(name, random=True).state_dict()
    third = build_backbone(name, random=True).state_dict()  # the generator moved on
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert not all(torch.equal(first[k], third[k]) for k in first)


def test_size_rule(small):
    assert snap_to_patch(20, 14) == 14 and snap_to_patch(21, 14) == 28  # nearest, halves up
    assert snap_to_patch(3, 14) == 14  # at least one patch
    assert small.input_size(14, 28) == (14, 28)  # multiples stay
    assert small.input_size(720, 1280, short_side=224) == (224, 392)  # 224 × 398.2 -> nearest multiples of 14
    assert small.input_size(1280, 720, short_side=448) == (798, 448)
    with pytest.raises(ValueError, match="short_side"):
        small.input_size(10, 10, short_side=0)
    with pytest.raises(ValueError, match="height"):
        small.input_size(0, 10)


def test_short_side_resizes_inside_extract(small):
    video = torch.rand(1, 1, 3, 30, 60)
    assert small.extract(video, short_side=28).shape == (1, 1, 384, 2, 4)
    assert small.extract(video).shape == (1, 1, 384, 2, 4)  # 30 × 60 -> 28 × 56 without short_side


@pytest.mark.parametrize(
    "video, match",
    [
        (torch.rand(2, 3, 28), "video must have shape"),  # 3-D
        (torch.rand(1, 1, 1, 3, 28, 28), "video must have shape"),  # 6-D
        (torch.rand(1, 2, 4, 28, 28), "3 channels"),
        (torch.rand(1, 3, 28, 28) * 255, r"\[0, 1\]"),
        (torch.rand(1, 3, 28, 28) - 0.5, r"\[0, 1\]"),  # already normalised
        (torch.full((1, 3, 28, 28), float("nan")), "NaN"),
        (torch.zeros(1, 3, 28, 28, dtype=torch.uint8), "floating-point"),
        (torch.zeros(1, 0, 3, 28, 28), ">= 1"),
        ([[0.5]], "torch.Tensor"),
    ],
)
def test_bad_video_raises_value_error_naming_it(small, video, match):
    with pytest.raises(ValueError, match="video") as error:
        small.extract(video)
    assert error.match(match)


def test_dtype_and_frozen_state(small):
    torch.manual_seed(0)
    backbone = build_backbone("dino_vits16", random=True, dtype=torch.bfloat16)
    feats = backbone.extract(torch.rand(1, 2, 3, 32, 48))  # the input stays float32, in [0, 1]
    assert feats.dtype == torch.bfloat16 and feats.shape == (1, 2, 384, 2, 3)
    assert not backbone.training and not feats.requires_grad
    assert small.extract(torch.rand(1, 1, 3, 28, 28)).grad_fn is None  # no graph kept across chunks


def test_bad_options_raise_value_error(small):
    video = torch.rand(1, 1, 3, 28, 28)
    with pytest.raises(ValueError, match="chunk"):
        small.extract(video, chunk=0)
    with pytest.raises(ValueError, match="chunk"):
        build_backbone("dinov2_vits14", random=True, chunk=-1)
    with pytest.raises(ValueError, match="contradict"):
        build_backbone("dinov2_vits14", pretrained=True, random=True)


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(ValueError, match="registered") as error:
        build_backbone("dinov4_vits16", random=True)
    for name in list_backbones():
        assert name in str(error.value)


@pytest.fixture
def no_network_no_waiting(monkeypatch):
    """Fail the test on any network connection, retry back-off or model construction."""

    def forbidden(*args, **kwargs):
        raise AssertionError("the offline check must fail before any network call, sleep or model build")

    monkeypatch.setattr(socket.socket, "connect", forbidden)
    monkeypatch.setattr(time, "sleep", forbidden)
    monkeypatch.setattr(timm, "create_model", forbidden)
    import transformers

    monkeypatch.setattr(transformers.Dinov2Model, "from_pretrained", forbidden)


@pytest.mark.parametrize("name", list(EXPECTED))
def test_offline_pretrained_fails_fast_with_a_clear_message(name, monkeypatch, tmp_path, no_network_no_waiting):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(offline.constants, "HF_HUB_CACHE", str(tmp_path))  # an empty cache
    with pytest.raises(RuntimeError) as error:
        build_backbone(name)  # pretrained is the default
    message = str(error.value)
    assert "HF_HUB_OFFLINE" in message and str(tmp_path) in message and name in message
    assert BACKBONES[name].model.split("/")[-1] in message  # the hub repository


def test_unreachable_hub_fails_fast_too(monkeypatch, tmp_path, no_network_no_waiting):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(offline.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(offline.constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr(offline, "hub_reachable", lambda timeout=offline.PROBE_TIMEOUT_S: False)
    with pytest.raises(RuntimeError, match="cannot be reached") as error:
        build_backbone("clip_vitb16", pretrained=True)
    assert "HF_HUB_OFFLINE" in str(error.value) and str(tmp_path) in str(error.value)


def test_cached_weights_pass_the_offline_check(monkeypatch, tmp_path):
    """A hub cache that holds the files lets the pretrained path go on to timm / transformers."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(offline.constants, "HF_HUB_CACHE", str(tmp_path))
    repo = tmp_path / "models--facebook--dinov2-small"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("abc123")
    snapshot = repo / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    files = (("config.json",), ("model.safetensors", "pytorch_model.bin"))
    with pytest.raises(RuntimeError, match="model.safetensors or pytorch_model.bin"):
        offline.require_hub_files("facebook/dinov2-small", files, what="hf_dinov2_vits14")
    (snapshot / "pytorch_model.bin").write_bytes(b"")
    offline.require_hub_files("facebook/dinov2-small", files, what="hf_dinov2_vits14")  # no error
