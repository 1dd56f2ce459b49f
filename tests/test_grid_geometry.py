"""Cells that do not tile the frame: `GridGeometry`, `sample_cells`, `CellAlignment`, `upsample(geometry=...)`."""

import pytest
import torch
import torch.nn.functional as F

import videoanyup as vau
from videoanyup.api import cell_alignment
from videoanyup.functional.grid_geometry import (
    CellAlignment,
    GridGeometry,
    resample_to_span,
    sample_cells,
)
from videoanyup.models.videoanyup import VideoAnyUp

S = 16  # stride of the test grids
RESNET = 0.5  # ResNet's stride-16 cell 0 is centred at pixel index 0: continuous 0.5


def resnet_like(h=6, w=8, frame=None) -> GridGeometry:
    return GridGeometry(grid=(h, w), frame=frame or (h * S, w * S), stride=(S, S), offset=(RESNET, RESNET))


def centre_pixels(geometry: GridGeometry) -> tuple[torch.Tensor, torch.Tensor]:
    """Index of the pixel that holds each cell centre (the centres fall on pixel centres here)."""
    ys, xs = geometry.centres()
    return ys.floor().long(), xs.floor().long()


# -- the geometry ----------------------------------------------------------------------------------------
def test_tiling_span_and_resize():
    tiling = GridGeometry.tiling((4, 6), (64, 96))
    assert tiling.stride == (16.0, 16.0) and tiling.offset == (8.0, 8.0) and tiling.is_tiling()
    assert tiling.span() == ((0.0, 64.0), (0.0, 96.0))
    shifted = resnet_like(4, 6)
    assert not shifted.is_tiling()
    assert shifted.span() == ((-7.5, 56.5), (-7.5, 88.5))  # half a cell out at the top, 7.5 px short at the bottom
    half = shifted.resized((32, 48))
    assert half.stride == (8.0, 8.0) and half.offset == (0.25, 0.25) and half.frame == (32, 48)
    assert tiling.resized((50, 70)).is_tiling()  # a tiling stays one under any resize
    assert GridGeometry(**shifted.to_dict()) == shifted


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(grid=(0, 4), frame=(8, 8), stride=(2, 2), offset=(1, 1)), "positive"),
        (dict(grid=(4, 4), frame=(8, 8), stride=(2, 2), offset=(float("nan"), 1)), "finite"),
        (dict(grid=(4,), frame=(8, 8), stride=(2, 2), offset=(1, 1)), "grid must be a pair"),
    ],
)
def test_bad_geometry_raises(kwargs, match):
    with pytest.raises(ValueError, match=match):
        GridGeometry(**kwargs)


def test_sample_cells_is_bilinear_for_a_tiling_and_exact_at_true_centres():
    torch.manual_seed(0)
    feats = torch.randn(2, 3, 5, 4, 6)  # (B, T, C, h, w)
    tiling = GridGeometry.tiling((4, 6), (64, 96))
    expected = F.interpolate(feats.flatten(0, 1), size=(64, 96), mode="bilinear", align_corners=False)
    torch.testing.assert_close(sample_cells(feats, tiling, (64, 96)).flatten(0, 1), expected)
    shifted = resnet_like(4, 6)
    out = sample_cells(feats, shifted, (64, 96))  # (B, T, C, 64, 96)
    ys, xs = centre_pixels(shifted)
    torch.testing.assert_close(out[..., ys[:, None], xs[None, :]], feats)
    # beyond the outer centres the outer cells repeat
    torch.testing.assert_close(out[..., -1, xs], feats[..., -1, :])


def test_resample_to_span_then_area_pooling_gives_each_cell_its_own_square():
    torch.manual_seed(0)
    shifted = resnet_like(4, 6)
    cells = torch.randn(1, 3, 4, 6)
    # a map constant over each cell's own square [centre − 8, centre + 8), cut to the frame, painted at 4
    # pixels per frame pixel so that the squares' edges fall between its pixels
    ys, xs = (torch.arange(256) + 0.5) / 4, (torch.arange(384) + 0.5) / 4
    rows = ((ys - (RESNET - S / 2)) // S).clamp(0, 3).long()
    cols = ((xs - (RESNET - S / 2)) // S).clamp(0, 5).long()
    painted = cells[..., rows[:, None], cols[None, :]]  # (1, 3, 256, 384)
    span = resample_to_span(painted, shifted)
    assert span.shape[-2:] == (256, 384)  # the span is as long as the frame, at the map's pitch
    torch.testing.assert_close(F.interpolate(span, size=(4, 6), mode="area"), cells, rtol=0, atol=1e-3)  # float32 grid
    # pooling the frame as if the cells tiled it mixes neighbours
    assert not torch.allclose(F.interpolate(painted, size=(4, 6), mode="area"), cells, atol=0.05)


# -- the alignment, with a stand-in upsampler of known behaviour -------------------------------------------
def nearest_tiling_upsampler(feats: torch.Tensor, guidance: torch.Tensor, size) -> torch.Tensor:
    """What a perfect upsampler of a constant-per-cell map returns when it assumes the cells tile its input."""
    return F.interpolate(feats, size=size, mode="nearest")


def test_alignment_puts_a_constant_per_cell_map_where_the_cells_are():
    torch.manual_seed(0)
    geometry = resnet_like()
    feats, frames = torch.randn(2, 5, 6, 8), torch.rand(2, 3, 96, 128)
    plan = CellAlignment.plan(geometry, (96, 128))
    assert plan.needed and plan.guidance_size == (96, 128) and plan.span_size == (96, 128)
    guidance = plan.guidance(frames)
    assert guidance.shape == (2, 3, 96, 128)
    # the guidance is the frame moved by the span's start: its pixel k is the frame's k - 7.5, halfway
    # between the frame's pixels k - 8 and k - 7 on both axes
    f = frames
    between = 0.25 * (f[..., :-8, :-8] + f[..., 1:-7, :-8] + f[..., :-8, 1:-7] + f[..., 1:-7, 1:-7])
    torch.testing.assert_close(guidance[..., 8:, 8:], between)
    out = plan.restore(nearest_tiling_upsampler(feats, guidance, plan.span_size))  # (2, 5, 96, 128)
    # every pixel shows the cell whose square [centre - 8, centre + 8) holds it; pixel k's centre k + ½ lies
    # in cell (k + 8) // 16's square, exactly on an edge when (k + 8) % 16 == 0 (those pixels are skipped)
    rows, cols = torch.arange(96) + 8, torch.arange(128) + 8
    inside_rows, inside_cols = rows % 16 != 0, cols % 16 != 0
    truth = feats[..., (rows // 16).clamp(max=5)[:, None], (cols // 16).clamp(max=7)[None, :]]  # (2, 5, 96, 128)
    keep = inside_rows[:, None] & inside_cols[None, :]
    torch.testing.assert_close(out[..., keep], truth[..., keep])
    # without the alignment the same upsampler shows the neighbour's vector on nearly half of the pixels
    wrong = nearest_tiling_upsampler(feats, frames, (96, 128))
    assert (wrong - truth)[..., keep].abs().amax(dim=(0, 1)).gt(1e-6).float().mean() > 0.4


def test_alignment_plans_the_requested_pitch():
    plan = CellAlignment.plan(resnet_like(), (192, 256))  # ×2 the frame
    assert plan.guidance_size == (96, 128) and plan.span_size == (192, 256)
    # 6 × 8 cells of 16 px span 96 × 128 px of a 100 × 130 frame; at 33 × 40 output pixels over the frame,
    # the span takes 31.68 × 39.4 of them: rounded up
    plan = CellAlignment.plan(resnet_like(frame=(100, 130)), (33, 40))
    assert plan.guidance_size == (96, 128) and plan.span_size == (32, 40)
    with pytest.raises(ValueError, match="frames must be"):
        plan.guidance(torch.rand(1, 3, 96, 128))
    with pytest.raises(ValueError, match="out must be"):
        plan.restore(torch.rand(1, 4, 10, 10))


# -- upsample(geometry=...) with the bundled weights ------------------------------------------------------
@pytest.fixture(scope="module")
def model() -> VideoAnyUp:
    from videoanyup.api import default_model

    return default_model()


def test_a_tiling_geometry_changes_nothing(model):
    torch.manual_seed(0)
    feats, video = torch.randn(1, 2, 8, 4, 6), torch.rand(1, 2, 3, 64, 96)
    tiling = GridGeometry.tiling((4, 6), (32, 48))  # on a frame of another size: rescaled to the video's
    plain = vau.upsample(feats, video, model=model, mode="perframe")
    torch.testing.assert_close(vau.upsample(feats, video, model=model, mode="perframe", geometry=tiling), plain, rtol=0, atol=0)


def own_weight_at_centres(model, cells, video, **kwargs) -> torch.Tensor:
    """One-hot features (C = h·w): the output at a cell's centre (`cells`: where they are) is the weight
    each cell gets there; returns the (h·w, h·w) weights, column = the cell whose centre it is."""
    h, w = cells.grid
    onehot = torch.eye(h * w).reshape(1, 1, h * w, h, w)
    out = vau.upsample(onehot, video, model=model, mode="perframe", **kwargs)[0, 0]  # (h·w, H, W)
    ys, xs = centre_pixels(cells)
    return out[:, ys[:, None], xs[None, :]].reshape(h * w, h * w)


def test_upsample_places_a_cnn_levels_cells_where_the_backbone_put_them(model):
    """On a ResNet-like grid (cells 7.5 px before the tiling's centres), with the geometry each cell's own
    vector dominates at its centre, and gets the weight a tiling grid's cell gets at its centre; without it,
    the cells are read half a cell away and weigh less there."""
    video = torch.full((1, 1, 3, 96, 128), 0.5)
    shifted, tiling = resnet_like(), GridGeometry.tiling((6, 8), (96, 128))
    placed = own_weight_at_centres(model, shifted, video, geometry=shifted)
    ignored = own_weight_at_centres(model, shifted, video)
    reference = own_weight_at_centres(model, tiling, video)
    cells = torch.arange(48)
    assert torch.equal(placed.argmax(0), cells)
    own, own_tiling, own_ignored = (float(x.diagonal().mean()) for x in (placed, reference, ignored))
    assert own == pytest.approx(own_tiling, abs=0.02)
    assert own > own_ignored + 0.01  # read half a cell away, a cell's own vector weighs less at its centre


def test_stream_with_geometry_equals_upsample(model):
    torch.manual_seed(0)
    geometry = resnet_like(4, 6)
    feats, video = torch.randn(1, 3, 8, 4, 6), torch.rand(1, 3, 3, 64, 96)
    expected = vau.upsample(feats, video, model=model, mode="unidirectional", geometry=geometry)
    stream = vau.upsample_stream(model=model, mode="unidirectional", geometry=geometry)
    outs = [o for t in range(3) for o in stream.push(feats[:, t], video[:, t])] + stream.flush()
    torch.testing.assert_close(torch.stack(outs, dim=1), expected, rtol=1e-5, atol=1e-5)


def test_bad_geometry_for_upsample_raises_naming_it(model):
    feats, video = torch.randn(1, 1, 8, 4, 6), torch.rand(1, 1, 3, 64, 96)
    with pytest.raises(ValueError, match="geometry describes a grid of \\(6, 8\\) cells"):
        vau.upsample(feats, video, model=model, geometry=resnet_like())
    with pytest.raises(ValueError, match="geometry must be a GridGeometry"):
        vau.upsample(feats, video, model=model, geometry=(16, 0.5))
    plan = cell_alignment(feats, video, resnet_like(4, 6), scale=(2, 2))
    assert plan.size == (8, 12) and plan.geometry.frame == (64, 96)
