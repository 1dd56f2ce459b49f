"""Levels, `timm:` specs and where a network's cells sit (backbones/spec.py, grid_trace.py, timm_backbones.py).

Random weights only; every model is built once per session (`built`), on inputs of a few cells.
"""

import functools

import pytest
import timm
import torch

from videoanyup.backbones import (
    Backbone,
    TimmBackbone,
    build_backbone,
    check_not_degenerate,
    context_change,
    open_residual_branches,
    parse_backbone,
)
from videoanyup.backbones.grid_trace import SpatialLayer, SpatialPath
from videoanyup.tasks.cli import main


@functools.lru_cache(maxsize=None)
def built(spec: str) -> Backbone:
    torch.manual_seed(0)
    return build_backbone(spec, random=True)


# -- specs ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text, registered, model, levels",
    [
        ("resnet50", "resnet50", "resnet50.a1_in1k", None),
        ("resnet50@s8", "resnet50", "resnet50.a1_in1k", ("s8",)),
        (" timm:resnet18.a1_in1k@-1 ", None, "resnet18.a1_in1k", (-1,)),
        ("timm:sam2_hiera_small.fb_r896@s8,s16", None, "sam2_hiera_small.fb_r896", ("s8", "s16")),
        ("timm:convnext_small@0,2", None, "convnext_small", (0, 2)),
    ],
)
def test_specs_parse(text, registered, model, levels):
    request = parse_backbone(text)
    assert (request.text, request.registered, request.model, request.levels) == (text.strip(), registered, model, levels)


@pytest.mark.parametrize(
    "text, match",
    [
        ("", "registered name"),
        ("timm:", "not a timm model"),
        ("timm:no_such_model_x", "not a timm model"),
        ("timm:resnet50.no_such_tag", "no pretrained tag"),
        ("resnet50@", "bad level list"),
        ("resnet50@x16", "bad level list"),
        ("resnet50@s8,", "bad level list"),
        ("resnet_50", "not a registered backbone"),
    ],
)
def test_bad_specs_raise_value_error_quoting_them(text, match):
    with pytest.raises(ValueError, match=match) as error:
        parse_backbone(text)
    assert repr(text.strip()) in str(error.value) or text == ""


@pytest.mark.parametrize("text, match", [("resnet50@9", r"neither an index in \[-5, 4\]"), ("resnet50@s64", "no level of stride 64"),
                                         ("hf_dinov2_vits14@-1", "has one level"), ("resnet50@s8,2", "same level twice")])
def test_levels_that_do_not_exist_are_refused_listing_the_levels(text, match):
    with pytest.raises(ValueError, match=match) as error:
        build_backbone(text, random=True)
    assert repr(text) in str(error.value)
    if "neither" in match or "no level" in match:
        assert "2: stride 8, C 512 (layer2)" in str(error.value)


@pytest.mark.parametrize("command", ["features", "probe"])
def test_cli_bad_spec_exits_2_naming_it(command, tmp_path, capsys):
    spec = "timm:resnet50@s64"
    if command == "features":
        argv = ["features", str(tmp_path / "missing.mp4"), "-o", str(tmp_path / "out"), "--backbone", "timm:not_a_model@s8",
                "--random-backbone", "--upsampler", "none"]
        spec = "timm:not_a_model@s8"
    else:
        (tmp_path / "JPEGImages" / "a").mkdir(parents=True)
        (tmp_path / "Annotations" / "a").mkdir(parents=True)
        argv = ["probe", "--task", "vos", "--train", str(tmp_path), "--test", str(tmp_path), "--backbone", spec,
                "--random-backbone", "--upsampler", "bilinear", "--quiet"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "--backbone" in err and spec in err


# -- levels --------------------------------------------------------------------------------------------
def test_several_levels_of_a_hierarchical_model():
    backbone = built("timm:sam2_hiera_small.fb_r896@s4,s8,s16,s32")
    assert [(lv.index, lv.stride, lv.channels) for lv in backbone.levels] == [(0, 4, 96), (1, 8, 192), (2, 16, 384), (3, 32, 768)]
    assert backbone.size_multiple == 32
    video = torch.rand(1, 2, 3, 64, 96)
    maps = backbone.extract_levels(video)
    assert [tuple(f.shape) for f in maps] == [(1, 2, 96, 16, 24), (1, 2, 192, 8, 12), (1, 2, 384, 4, 6), (1, 2, 768, 2, 3)]
    # Hiera's 7×7/4 patch embedding (padding 3) centres cell i at 4·i, each 2×2 pool at 2·i + ½ of the grid below
    offsets = [g.offset[0] for g in backbone.geometries(64, 96)]
    assert offsets == pytest.approx([0.5, 2.5, 6.5, 14.5])
    # one level alone is the same map as within several
    single = built("sam2_hiera_small@s8")
    torch.testing.assert_close(single.extract(video), maps[1], rtol=1e-4, atol=1e-4)
    for what in (lambda: backbone.extract(video), lambda: backbone.stride, lambda: backbone.geometry(64, 96)):
        with pytest.raises(ValueError, match="4 levels"):
            what()


def test_a_level_by_stride_or_index_is_the_same_level():
    by_stride, by_index = built("resnet50@s8"), built("timm:resnet50.a1_in1k@2")
    assert by_stride.levels == by_index.levels and by_stride.stride == 8 and by_stride.embed_dim == 512
    video = torch.rand(1, 1, 3, 40, 48)
    torch.testing.assert_close(by_stride.extract(video), by_index.extract(video))  # same seed, same weights


@pytest.mark.parametrize("spec, size", [("resnet50@s8", 128), ("convnext_tiny@s4", 128)])
def test_geometry_is_the_centre_of_the_receptive_field(spec, size):
    """The traced geometry against the network itself: the pixels a central cell depends on (its gradient's
    support) are centred where `geometry` puts the cell, for a padded CNN (ResNet: off the tiling) and an
    unpadded one (ConvNeXt: the tiling)."""
    backbone = built(spec)
    frames = torch.rand(1, 3, size, size, requires_grad=True)
    normalised = (frames - backbone._mean) / backbone._std
    feats = backbone._encode_levels(normalised)[0]  # (1, C, h, w)
    i = feats.shape[-2] // 2
    feats[0, :, i, i].sum().backward()
    support = frames.grad[0].abs().sum(0) > 0  # (H, W)
    rows, cols = support.any(1).nonzero().flatten(), support.any(0).nonzero().flatten()
    assert 0 < rows.min() and rows.max() < size - 1  # the receptive field lies inside the frame
    geometry = backbone.geometry(size, size)
    centre = geometry.offset[0] + geometry.stride[0] * i  # continuous coordinates: pixel k spans [k, k + 1)
    assert (rows.min() + rows.max() + 1) / 2 == centre and (cols.min() + cols.max() + 1) / 2 == centre
    assert geometry.is_tiling() == spec.startswith("convnext")


def test_spatial_path_composes_padding_stride_and_ceil_mode():
    stem = SpatialLayer((7, 7), (2, 2), (3, 3), (1, 1))
    pool = SpatialLayer((3, 3), (2, 2), (1, 1), (1, 1))
    path = SpatialPath((stem, pool))
    assert path.grid(65, 64) == (17, 16)
    geometry = path.geometry(64, 64)
    assert geometry.stride == (4.0, 4.0) and geometry.offset == (0.5, 0.5)  # index 4·i, continuous 4·i + ½
    patch = SpatialPath((SpatialLayer((16, 16), (16, 16), (0, 0), (1, 1)),))
    assert patch.geometry(32, 48).is_tiling()
    ceil = SpatialLayer((2, 2), (2, 2), (0, 0), (1, 1), ceil_mode=True)
    assert ceil.out_length(0, 5) == 3 and SpatialLayer((2, 2), (2, 2), (0, 0), (1, 1)).out_length(0, 5) == 2
    same = SpatialLayer((3, 3), (2, 2), (0, 0), (1, 1), same=True)  # TF "same": pad 0 before on 8, 1 on 7
    assert same.out_length(0, 8) == 4 and same.centre(0, 8) == 1.0 and same.centre(0, 7) == 0.0


class _ReducedAttentionStage(torch.nn.Module):
    """A strided embedding, then attention whose keys come from a strided convolution of the same grid (as in
    PVT): that convolution's map becomes tokens, and no later layer reads it as a grid."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = torch.nn.Conv2d(3, 8, 7, stride=4, padding=3)
        self.reduce = torch.nn.Conv2d(8, 8, 4, stride=4)
        self.down = torch.nn.Conv2d(8, 8, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.embed(x)  # (1, 8, H/4, W/4)
        keys = self.reduce(x).flatten(2)  # (1, 8, n): tokens
        weights = torch.softmax(x.flatten(2).transpose(1, 2) @ keys, dim=-1)  # (1, hw, n)
        x = x + (weights @ keys.transpose(1, 2)).transpose(1, 2).reshape(x.shape)
        return self.down(x)  # (1, 8, H/8, W/8)


def test_a_side_branch_that_becomes_tokens_is_not_on_the_path():
    from videoanyup.backbones.grid_trace import trace_spatial_path

    model = _ReducedAttentionStage()
    path = trace_spatial_path(model, model, torch.rand(1, 3, 64, 96))
    assert [layer.kernel for layer in path.layers] == [(7, 7), (3, 3)]  # the 4 × 4 key reduction is left out
    assert path.geometry(64, 96).offset == (0.5, 0.5) and path.geometry(64, 96).grid == (8, 12)


def test_pyramid_vision_transformer_levels_build_with_their_geometry():
    for spec, size in (("timm:pvt_v2_b0@s8", (64, 72)), ("timm:pvt_v2_b0@s16", (96, 128))):
        backbone = built(spec)
        feats = backbone.extract(torch.rand(1, 1, 3, *size))
        assert feats.shape[-2:] == backbone.geometry(*size).grid == (size[0] // backbone.stride, size[1] // backbone.stride)


# -- random weights ------------------------------------------------------------------------------------
@pytest.mark.parametrize("model_name", ["resnet50.a1_in1k", "convnext_tiny.fb_in1k"])
def test_timm_default_init_of_cnns_is_degenerate_and_detected(model_name):
    """ResNet's zero-initialised last BatchNorm and ConvNeXt's gamma 1e-6 switch every block off: a cell then
    sees only its own square. The context check finds it; opening the branches cures it."""
    torch.manual_seed(0)
    model = timm.create_model(model_name, pretrained=False).eval()
    backbone = TimmBackbone(model, name="degenerate", levels=["s16"])
    assert context_change(backbone)[0] < 1e-4
    with pytest.raises(RuntimeError, match="degenerate.*beyond the cell"):
        check_not_degenerate(backbone)
    assert open_residual_branches(model) in (13, 15)  # the blocks up to stride 16: ResNet-50 3+4+6, ConvNeXt-T 3+3+9
    assert context_change(backbone)[0] > 0.05


def test_random_dinov3_is_not_degenerate():
    """timm's DINOv3 initialisation has LayerScale 1e-5 and depth-scaled projections; both are undone."""
    backbone = built("dinov3_vits16")
    gammas = [p for n, p in backbone.named_parameters() if n.endswith(("gamma_1", "gamma_2"))]
    assert len(gammas) == 24 and all(torch.equal(g, torch.ones_like(g)) for g in gammas)
    assert check_not_degenerate(backbone) > 0.05


def test_rope_model_runs_at_any_multiple_of_its_stride():
    backbone = built("dinov3_vits16")
    for height, width in ((16, 16), (32, 80), (112, 48)):
        feats = backbone.extract(torch.rand(1, 1, 3, height, width))
        assert feats.shape == (1, 1, 384, height // 16, width // 16) and torch.isfinite(feats).all()
