"""The feature-agnostic input layer: one descriptor size for every C, invariant to channel order and scale."""

import pytest
import torch

from videoanyup.layers.feature_agnostic import FeatureAgnosticLayer, l2_normalise


@pytest.fixture
def layer():
    torch.manual_seed(0)
    return FeatureAgnosticLayer(basis=16, kernel_size=5).eval()


@pytest.mark.parametrize("channels", [1, 3, 384, 768, 1024])
def test_any_channel_count_gives_a_distribution_over_the_basis(layer, channels):
    feats = torch.randn(2, channels, 6, 5)
    out = layer(feats)
    assert out.shape == (2, 16, 6, 5)
    assert torch.allclose(out.sum(dim=1), torch.ones(2, 6, 5), atol=1e-5)
    assert bool((out >= 0).all())


def test_invariant_to_channel_permutation(layer):
    feats = torch.randn(2, 37, 7, 6)
    permuted = feats[:, torch.randperm(37)]
    assert torch.allclose(layer(feats), layer(permuted), atol=1e-6)


@pytest.mark.parametrize("factor", [0.01, 3.0, 250.0])
def test_invariant_to_positive_scaling(layer, factor):
    feats = torch.randn(1, 12, 5, 5)
    assert torch.allclose(layer(feats), layer(feats * factor), atol=1e-6)


def test_channel_blocks_do_not_change_the_result():
    torch.manual_seed(1)
    big = FeatureAgnosticLayer(basis=8)
    small = FeatureAgnosticLayer(basis=8, block_values=1)  # one channel at a time
    small.load_state_dict(big.state_dict())
    feats = torch.randn(2, 29, 6, 7)
    assert torch.allclose(big(feats), small(feats), atol=1e-6)


def test_border_normalisation_keeps_a_uniform_response_at_the_borders(layer):
    with torch.no_grad():
        layer.filters.copy_(torch.linspace(0.1, 2.0, 16).view(16, 1, 1, 1).expand_as(layer.filters))
    feats = torch.ones(1, 4, 6, 7)  # constant map: every position, borders included, must agree
    out = layer(feats)
    assert torch.allclose(out, out[:, :, 3:4, 3:4].expand_as(out), atol=1e-6)


def test_l2_normalise_handles_zero_vectors_and_single_channels():
    feats = torch.zeros(1, 5, 3, 3)
    feats[0, :, 0, 0] = torch.tensor([3.0, 0.0, 4.0, 0.0, 0.0])
    unit = l2_normalise(feats)
    assert torch.isfinite(unit).all()
    assert torch.allclose(unit[0, :, 0, 0], torch.tensor([0.6, 0.0, 0.8, 0.0, 0.0]))
    assert unit[0, :, 1, 1].abs().sum() == 0
    single = l2_normalise(torch.tensor([-2.0, 0.5, 0.0]).view(1, 1, 1, 3))
    assert single.flatten().tolist() == [-1.0, 1.0, 0.0]


def test_even_kernel_size_is_refused():
    with pytest.raises(ValueError, match="kernel_size"):
        FeatureAgnosticLayer(basis=4, kernel_size=4)
