"""`videoanyup features` and `videoanyup probe` on a CNN level and a Hiera level (specs and geometry passed on).

Offline: random backbones on tiny synthetic clips, a tiny VideoAnyUp saved to tmp.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import videoanyup
from videoanyup.backbones.base import Backbone
from videoanyup.backbones.registry import build_backbone
from videoanyup.functional.grid_geometry import GridGeometry, sample_cells
from videoanyup.layers.guidance_encoder import resize_guidance
from videoanyup.models.videoanyup import VideoAnyUp
from videoanyup.tasks.cli import main
from videoanyup.tasks.features import load_features, load_lr, read_index
from videoanyup.tasks.probes.upsamplers import make_upsampler
from videoanyup.tasks.probes.vos import VOS_KEYS
from videoanyup.tasks.video_io import read_video

from conftest import write_synthetic_clip  # noqa: E402
from test_probes import write_davis  # noqa: E402

CNN, HIERA = "resnet50@s8", "sam2_hiera_small@s8"


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("any_backbone")
    torch.manual_seed(0)
    VideoAnyUp.from_config("tiny").save_pretrained(root / "weights")
    write_synthetic_clip(root / "clip", frames=3, height=48, width=64)
    write_davis(root / "davis", ["alpha", "beta", "gamma"], frames=3)
    return root


def test_features_of_a_cnn_level_equal_upsample_with_its_geometry(setup, tmp_path):
    out = tmp_path / "cnn"
    assert main([
        "features", str(setup / "clip"), "-o", str(out), "--backbone", CNN, "--random-backbone",
        "--weights", str(setup / "weights"), "--mode", "perframe", "--save-lr", "--quiet",
    ]) == 0
    index = read_index(out)
    assert index["backbone"] == CNN and index["input_size"] == [48, 64] and index["lr_grid"] == [6, 8]
    assert index["lr_geometry"] == {"grid": [6, 8], "frame": [48, 64], "stride": [8.0, 8.0], "offset": [0.5, 0.5]}
    # what the command should write: the random backbone (seed 0), then upsample with the backbone's geometry
    torch.manual_seed(0)
    backbone = build_backbone(CNN, random=True)
    video = read_video(setup / "clip", 0, None)  # (T, 3, 48, 64)
    with torch.no_grad():
        lr = backbone.extract(video[None])  # (1, T, 512, 6, 8)
    model = VideoAnyUp.from_pretrained(setup / "weights").eval()
    geometry = backbone.geometry(48, 64)
    expected = videoanyup.upsample(lr, video[None], model=model, mode="perframe", geometry=geometry)[0].numpy()
    got = load_features(out)
    assert got.shape == (3, 512, 48, 64) == expected.shape
    assert np.abs(got.astype(np.float32) - expected).max() <= 1e-5 + 2.0**-10 * np.abs(expected).max()
    stored = load_lr(out).astype(np.float32)
    assert np.abs(stored - lr[0].numpy()).max() <= 1e-4 + 2.0**-10 * np.abs(stored).max()
    # and not what the tiling assumption gives
    tiled = videoanyup.upsample(lr, video[None], model=model, mode="perframe")[0].numpy()
    assert np.abs(tiled - expected).max() > 100 * 2.0**-10 * np.abs(expected).max()


def test_features_of_a_hiera_level(setup, tmp_path):
    out = tmp_path / "hiera"
    assert main([
        "features", str(setup / "clip"), "-o", str(out), "--backbone", HIERA, "--random-backbone",
        "--upsampler", "none", "--quiet",
    ]) == 0
    index = read_index(out)
    assert index["input_size"] == [64, 64] and index["lr_grid"] == [8, 8]  # sides rounded to Hiera's 32
    assert index["lr_geometry"]["offset"] == [2.5, 2.5] and index["embed_dim"] == 192
    assert load_features(out).shape == (3, 192, 8, 8)


@pytest.mark.parametrize("spec", [CNN, HIERA])
def test_probe_runs_on_a_level(setup, tmp_path, spec):
    out = tmp_path / "vos.json"
    assert main([
        "probe", "--task", "vos", "--train", str(setup / "davis"), "--train-seqs", "alpha,beta", "--test",
        str(setup / "davis"), "--test-seqs", "gamma", "--backbone", spec, "--random-backbone", "--upsampler",
        "bilinear,perframe", "--weights", str(setup / "weights"), "--frames-per-seq", "3", "--short-side", "42",
        "--pixels", "64", "--steps", "20", "--json", str(out), "--quiet",
    ]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [r["upsampler"] for r in rows] == ["bilinear", "perframe", "featureless"]
    assert all(set(r) == set(VOS_KEYS) for r in rows)
    assert all(0 < r["fidelity"] <= 1 and 0 <= r["JF"] <= 1 for r in rows[:2])


def test_probe_bilinear_interpolates_between_the_true_cell_centres():
    torch.manual_seed(0)
    feats, frames = torch.randn(2, 5, 6, 8), torch.rand(2, 3, 48, 64)
    geometry = GridGeometry(grid=(6, 8), frame=(48, 64), stride=(8, 8), offset=(0.5, 0.5))
    bilinear = make_upsampler("bilinear")
    torch.testing.assert_close(bilinear(feats, frames, geometry=geometry), sample_cells(feats, geometry, (48, 64)))
    tiling = GridGeometry.tiling((6, 8), (96, 128))  # another frame size: rescaled, still a tiling
    expected = torch.nn.functional.interpolate(feats, size=(48, 64), mode="bilinear", align_corners=False)
    torch.testing.assert_close(bilinear(feats, frames, geometry=tiling), expected, rtol=0, atol=0)
    guidance = resize_guidance(frames, (48, 64))  # the learned ones go through upsample(geometry=...)
    model = VideoAnyUp.from_config("tiny").eval()
    with torch.inference_mode():
        direct = videoanyup.upsample(feats[None], guidance[None], model=model, mode="perframe", geometry=geometry)[0]
    torch.testing.assert_close(make_upsampler("perframe", model)(feats, frames, geometry=geometry), direct)


# -- the training objective on cells that do not tile ----------------------------------------------------
class ShiftedPool(Backbone):
    """Averages p × p pixel blocks that start `d` pixels before the tiling's (its input padded by d at the top
    and left, replicated): cell i covers [p·i − d, p·i − d + p), centred at p/2 − d + p·i."""

    def __init__(self, patch: int, d: int, declare: bool = True) -> None:
        super().__init__(name="shifted", patch_size=patch, embed_dim=3, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
        self.d, self.declare = d, declare
        self.register_buffer("unused", torch.zeros(1))

    def _encode(self, frames):
        padded = F.pad(frames, (self.d, 0, self.d, 0), mode="replicate")[..., : frames.shape[-2], : frames.shape[-1]]
        return F.avg_pool2d(padded, self.patch_size)

    def _input_geometry(self, position, size):
        p = self.patch_size
        if not self.declare:
            return super()._input_geometry(position, size)
        return GridGeometry(grid=(size[0] // p, size[1] // p), frame=size, stride=(p, p), offset=(p / 2 - self.d, p / 2 - self.d))


def test_objective_moves_boxes_so_that_shifted_cells_tile_their_region():
    """With the shift, LR cells and target cells cover exactly the tiling's image regions (away from the first
    row and column, where the backbone's own padding shows); a backbone that hides its offset does not."""
    from videoanyup.tasks.upsampler.objective import cell_shift, crop_targets, lr_features, take_windows

    torch.manual_seed(0)
    grid, zoom, patch, d = 4, 2, 8, 3
    images = torch.rand(2, 3, 64, 64)
    honest, hiding = ShiftedPool(patch, d), ShiftedPool(patch, d, declare=False)
    assert cell_shift(honest, grid) == (-d / patch, -d / patch) and cell_shift(hiding, grid) == (0.0, 0.0)
    windows = torch.tensor([[2, 3], [4, 1]])  # interior windows of the 8 × 8 output grid
    ideal = F.avg_pool2d(images, 64 // (zoom * grid))  # (2, 3, 8, 8): the tiling's regions
    target = crop_targets(honest, images, windows, grid=grid, zoom=zoom)  # (2, 3, 4, 4)
    torch.testing.assert_close(target[..., 1:, 1:], take_windows(ideal, windows, grid)[..., 1:, 1:], rtol=0, atol=1e-5)
    wrong = crop_targets(hiding, images, windows, grid=grid, zoom=zoom)
    assert (wrong - take_windows(ideal, windows, grid))[..., 1:, 1:].abs().max() > 0.05
    small = F.avg_pool2d(images, 64 // grid)  # (2, 3, 4, 4): at scale 64 → 32 the LR box is resampled
    lr = lr_features(honest, F.interpolate(images, size=grid * patch, mode="area"), grid)
    torch.testing.assert_close(lr[..., 1:, 1:], small[..., 1:, 1:], rtol=0, atol=1e-5)


def test_objective_refuses_a_grid_the_backbone_cannot_keep():
    from videoanyup.tasks.upsampler.objective import lr_features

    with pytest.raises(ValueError, match="grid 3 needs 24 px of input, not a multiple of backbone 'sam2_hiera_small@s8'"
                       "'s 32: use grids that are multiples of 4"):
        lr_features(build_backbone(HIERA, random=True), torch.rand(1, 3, 32, 32), 3)


def test_training_config_backbones_take_specs_and_refuse_bad_ones():
    from videoanyup.tasks.upsampler.system import UpsamplerSystem

    system = UpsamplerSystem(VideoAnyUp.from_config("tiny"), backbones=["dinov2_vits14", "resnet50@s8", "timm:resnet18.a1_in1k"])
    assert list(system.hparams.backbones) == ["dinov2_vits14", "resnet50@s8", "timm:resnet18.a1_in1k"]
    with pytest.raises(ValueError, match="backbones: backbone 'timm:resnet50@x': bad level list 'x'"):
        UpsamplerSystem(VideoAnyUp.from_config("tiny"), backbones=["dinov2_vits14", "timm:resnet50@x"])
