"""Synthetic flow pairs (videoanyup.tasks.flow.synthetic) and their image sources."""

import pytest
import torch

from videoanyup.functional import flow_warp
from videoanyup.tasks.flow.sources import load_images, skimage_images
from videoanyup.tasks.flow.synthetic import SyntheticFlowPairs


@pytest.fixture(scope="module")
def images():
    return skimage_images(("astronaut", "coffee", "chelsea"))


def test_ground_truth_aligns_the_frames_on_valid_pixels(images):
    pairs = SyntheticFlowPairs(images, crop=64, length=12, seed=3, max_motion=16, photometric=False)
    for i in range(len(pairs)):
        item = pairs[i]
        assert item["ref"].shape == item["supp"].shape == (3, 64, 64)
        assert item["flow"].shape == (2, 64, 64) and item["valid"].shape == (1, 64, 64)
        assert item["valid"].mean() > 0.2
        warped = flow_warp(item["supp"][None], item["flow"][None])[0]
        error = (warped - item["ref"]).abs() * item["valid"]
        assert error.max() < 1e-4, f"pair {i}"
        assert item["flow"].norm(dim=0).max() <= 16 + 1e-4


def test_occluding_layers_give_independent_motion_and_invalid_pixels(images):
    pairs = SyntheticFlowPairs(images, crop=64, length=20, seed=0, max_motion=16, max_layers=2, photometric=False)
    invalid_fractions = []
    for i in range(len(pairs)):
        item = pairs[i]
        invalid_fractions.append(1 - float(item["valid"].mean()))
    assert max(invalid_fractions) > 0.05  # occlusions and motion out of the frame are masked


def test_without_layers_the_flow_is_smooth(images):
    pairs = SyntheticFlowPairs(images, crop=64, length=4, seed=1, max_motion=8, max_layers=0, photometric=False)
    for i in range(len(pairs)):
        flow = pairs[i]["flow"]
        assert (flow[:, :, 1:] - flow[:, :, :-1]).abs().max() < 1.0
        assert (flow[:, 1:] - flow[:, :-1]).abs().max() < 1.0


def test_pairs_are_deterministic_per_seed_and_index(images):
    a = SyntheticFlowPairs(images, crop=32, length=6, seed=5, max_motion=8)
    b = SyntheticFlowPairs(images, crop=32, length=6, seed=5, max_motion=8)
    first = a[4]
    _ = a[1]
    for key, value in first.items():
        assert torch.equal(value, a[4][key]) and torch.equal(value, b[4][key])
    c = SyntheticFlowPairs(images, crop=32, length=6, seed=6, max_motion=8)
    assert not torch.equal(first["ref"], c[4]["ref"])
    assert not torch.equal(a[3]["flow"], a[4]["flow"])


def test_photometric_noise_differs_per_frame_and_leaves_the_flow(images):
    noisy = SyntheticFlowPairs(images, crop=32, length=2, seed=2, max_motion=8)[0]
    clean = SyntheticFlowPairs(images, crop=32, length=2, seed=2, max_motion=8, photometric=False)[0]
    assert torch.equal(noisy["flow"], clean["flow"]) and torch.equal(noisy["valid"], clean["valid"])
    assert not torch.allclose(noisy["ref"], clean["ref"]) and not torch.allclose(noisy["supp"], clean["supp"])
    assert 0 <= noisy["ref"].min() and noisy["ref"].max() <= 1


def test_low_light_dims_both_frames_alike_and_keeps_the_motion(images):
    plain = SyntheticFlowPairs(images, crop=32, length=8, seed=2, max_motion=8)
    off = SyntheticFlowPairs(images, crop=32, length=8, seed=2, max_motion=8, low_light=0.0)
    dark = SyntheticFlowPairs(images, crop=32, length=8, seed=2, max_motion=8, low_light=1.0)
    for i in range(8):
        assert all(torch.equal(plain[i][k], off[i][k]) for k in plain[i])  # the option off changes nothing
        assert torch.equal(dark[i]["flow"], plain[i]["flow"]) and torch.equal(dark[i]["valid"], plain[i]["valid"])
        # every pair dimmed (exposure ≤ 0.7 of a darkening gamma): well below the plain pair's brightness
        assert dark[i]["ref"].mean() < 0.8 * plain[i]["ref"].mean() + 0.05
        assert dark[i]["supp"].mean() < 0.8 * plain[i]["supp"].mean() + 0.05
    with pytest.raises(ValueError, match="low_light must be a fraction in \\[0, 1\\], got 1.5"):
        SyntheticFlowPairs(images, low_light=1.5)


def test_large_motion_moves_more_and_off_changes_nothing(images):
    kwargs = dict(crop=32, length=24, seed=5, max_motion=16, max_layers=0, photometric=False)
    plain, off = SyntheticFlowPairs(images, **kwargs), SyntheticFlowPairs(images, large_motion=0.0, **kwargs)
    large = SyntheticFlowPairs(images, large_motion=1.0, **kwargs)
    assert all(torch.equal(plain[i]["ref"], off[i]["ref"]) for i in range(4))
    plain_motion = torch.stack([plain[i]["flow"].norm(dim=0).mean() for i in range(24)])
    large_motion = torch.stack([large[i]["flow"].norm(dim=0).mean() for i in range(24)])
    # translations in [4, 16] px plus a smooth field: every pair moves ≥ 2 px on average, unlike log-uniform ones
    assert large_motion.min() > 2.0 and large_motion.median() > plain_motion.median()
    with pytest.raises(ValueError, match="large_motion must be a fraction in \\[0, 1\\], got -0.1"):
        SyntheticFlowPairs(images, large_motion=-0.1)


def test_bad_arguments_are_named(images):
    with pytest.raises(ValueError, match="images"):
        SyntheticFlowPairs(images[:1])
    with pytest.raises(ValueError, match="crop"):
        SyntheticFlowPairs(images, crop=4)
    with pytest.raises(ValueError, match="max_motion"):
        SyntheticFlowPairs(images, max_motion=0)
    with pytest.raises(IndexError):
        SyntheticFlowPairs(images, length=2)[2]


def test_load_images_from_folders_and_videos(tmp_path, synthetic_clip):
    synthetic_clip(tmp_path / "clips" / "a", frames=6)
    synthetic_clip(tmp_path / "clips" / "b.mp4", frames=5)
    images = load_images([tmp_path / "clips"], frame_stride=2, with_skimage=False)
    assert len(images) == 3 + 3
    assert all(im.dtype == torch.uint8 and im.shape == (3, 48, 64) for im in images)
    with pytest.raises(ValueError, match="frame_stride"):
        load_images([tmp_path / "clips"], frame_stride=0)
    with pytest.raises(ValueError, match="does not exist"):
        load_images([tmp_path / "missing"])
