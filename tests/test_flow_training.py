"""SPyNet pretraining: the level-by-level runner, the multi-scale loss, and exact resumption."""

import lightning as L
import pytest
import torch

from videoanyup.layers.spynet import SPyNet
from videoanyup.tasks.flow.cli import resumable_loader
from videoanyup.tasks.flow.pyramid import level_flows
from videoanyup.tasks.flow.sources import skimage_images
from videoanyup.tasks.flow.synthetic import SyntheticFlowPairs
from videoanyup.tasks.flow.system import FlowPretraining, masked_epe, zero_flow_heads


@pytest.fixture(scope="module")
def pairs():
    images = skimage_images(("astronaut", "coffee", "chelsea"))
    return SyntheticFlowPairs(images, crop=64, length=16, seed=0, max_motion=6, max_layers=1)


def _random_spynet():
    spynet = SPyNet()
    for p in spynet.parameters():
        p.data.mul_(0.5)
    return spynet


def test_levels_reproduce_the_network():
    spynet = _random_spynet()
    ref, supp = torch.rand(2, 3, 64, 96), torch.rand(2, 3, 64, 96)
    with torch.no_grad():
        full = spynet(ref, supp)
        levels = level_flows(spynet, ref, supp)
        assert [lf.flow.shape[-1] for lf in levels] == [3, 6, 12, 24, 48, 96]
        assert torch.allclose(levels[-1].flow, full, atol=1e-5)
        windowed = level_flows(spynet, ref, supp, window=48, generator=torch.Generator().manual_seed(0))[-1]
    assert windowed.flow.shape == (2, 2, 48, 48) and windowed.stride == 1
    crop = full[:, :, windowed.top : windowed.top + 48, windowed.left : windowed.left + 48]
    # away from the window's edges (zero padding of the convolutions) the window equals the network
    assert torch.allclose(windowed.flow[..., 20:-20, 20:-20], crop[..., 20:-20, 20:-20], atol=1e-3)
    with pytest.raises(ValueError, match="window"):
        level_flows(spynet, ref, supp, window=47)


def test_zero_heads_predict_zero_flow():
    spynet = zero_flow_heads(SPyNet())
    assert spynet(torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32)).abs().max() == 0


def test_masked_epe_ignores_invalid_pixels():
    flow, target = torch.zeros(1, 2, 4, 4), torch.zeros(1, 2, 4, 4)
    target[:, 0, 0, 0] = 100.0
    valid = torch.ones(1, 1, 4, 4)
    valid[:, :, 0, 0] = 0
    assert masked_epe(flow, target, valid) == 0
    target[:, 1, 1, 1] = 3.0
    assert masked_epe(flow, target, valid) == pytest.approx(3.0 / 15)


def test_a_few_steps_lower_the_loss(pairs):
    batch = {k: torch.stack([pairs[i][k] for i in range(4)]) for k in pairs[0]}
    system = FlowPretraining(zero_flow_heads(SPyNet()), lr=1e-3, total_steps=30, warmup_steps=0, window=32)
    optimizer = torch.optim.Adam(system.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(0)
    first, _ = system.multiscale_loss(batch, generator)
    for _ in range(15):
        loss, _ = system.multiscale_loss(batch, generator)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    last, _ = system.multiscale_loss(batch, torch.Generator().manual_seed(0))
    assert last < 0.8 * first


def _fit(pairs, tmp_path, steps, *, resume=None, start=0):
    torch.manual_seed(0)
    system = FlowPretraining(zero_flow_heads(SPyNet()), lr=1e-3, total_steps=4, warmup_steps=1, window=32, seed=1)
    trainer = L.Trainer(
        accelerator="cpu", max_steps=steps, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, gradient_clip_val=1.0,
    )
    trainer.fit(system, resumable_loader(pairs, start, 2), ckpt_path=resume)
    return system, trainer


def test_resume_is_exact(pairs, tmp_path):
    straight, _ = _fit(pairs, tmp_path, 4)
    _, first = _fit(pairs, tmp_path, 2)
    first.save_checkpoint(tmp_path / "half.ckpt")
    resumed, _ = _fit(pairs, tmp_path, 4, resume=tmp_path / "half.ckpt", start=2)
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6), name


def test_tied_levels_share_level_zero_and_untie_copies_it():
    spynet = _random_spynet()
    ref, supp = torch.rand(1, 3, 64, 64), torch.rand(1, 3, 64, 64)
    system = FlowPretraining(spynet, tied_steps=10)
    assert system.tied
    with torch.no_grad():
        tied = level_flows(spynet, ref, supp, tied=True)[-1].flow
        system.untie()
        for module in spynet.basic_module[1:]:
            assert all(torch.equal(a, b) for a, b in zip(module.parameters(), spynet.basic_module[0].parameters()))
        assert torch.allclose(spynet(ref, supp), tied, atol=1e-5)


def test_initialisation_keeps_features_alive_and_heads_small():
    from videoanyup.tasks.flow.system import kaiming_init, scale_flow_heads

    spynet = scale_flow_heads(kaiming_init(SPyNet()), 0.1)
    head = spynet.basic_module[0].basic_module[-1].conv
    assert head.bias.abs().max() == 0 and 0 < head.weight.abs().mean() < 0.05
    features = spynet.basic_module[0].basic_module[:-1](torch.randn(1, 8, 32, 32))
    assert features.std() > 0.1 and (features > 0).float().mean() > 0.2


def test_bundled_weights_load_by_name():
    from videoanyup.checkpoint import BUNDLED_WEIGHTS
    from videoanyup.tasks.flow.weights import load_spynet

    if not (BUNDLED_WEIGHTS / "spynet" / "synthetic" / "model.safetensors").is_file():
        pytest.skip("no bundled SPyNet weights in this checkout")
    spynet = load_spynet("synthetic")
    assert spynet(torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32)).shape == (1, 2, 32, 32)
    with pytest.raises(ValueError, match="spynet"):
        load_spynet("no-such-weights")


def test_command_line_rejects_bad_arguments(capsys):
    from videoanyup.tasks.flow.cli import main

    assert main(["--crop", "100"]) == 2
    assert "--crop" in capsys.readouterr().err
    assert main(["--eval-only"]) == 2
    assert "--sintel" in capsys.readouterr().err
    assert main(["--low-light", "1.5"]) == 2
    assert "--low-light must be a fraction in [0, 1], got 1.5" in capsys.readouterr().err
    assert main(["--large-motion", "-1"]) == 2
    assert "--large-motion must be a fraction in [0, 1], got -1.0" in capsys.readouterr().err
    assert main(["--accelerator", "tpu"]) == 2
    assert "--accelerator must be one of cpu, gpu" in capsys.readouterr().err


def test_folded_batch_norm_equals_the_normalised_network_in_the_published_layout():
    from videoanyup.tasks.flow.batch_norm import add_batch_norm, fold_batch_norm, has_batch_norm

    spynet = add_batch_norm(_random_spynet())
    assert has_batch_norm(spynet)
    for module in spynet.modules():  # non-trivial affine parameters and running statistics
        if isinstance(module, torch.nn.BatchNorm2d):
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.2, 0.2)
    with torch.no_grad():
        for _ in range(3):
            spynet(torch.rand(2, 3, 64, 64), torch.rand(2, 3, 64, 64))  # train mode: updates running stats
    spynet.eval()
    plain = fold_batch_norm(spynet)
    assert not has_batch_norm(plain) and list(plain.state_dict()) == list(SPyNet().state_dict())
    ref, supp = torch.rand(1, 3, 64, 96), torch.rand(1, 3, 64, 96)
    with torch.no_grad():
        assert torch.allclose(plain(ref, supp), spynet(ref, supp), atol=1e-4)


def test_teacher_forcing_starts_each_level_from_the_coarser_ground_truth():
    import torch.nn.functional as F

    spynet = zero_flow_heads(_random_spynet())  # every level keeps its input flow
    ref, supp = torch.rand(1, 3, 64, 64), torch.rand(1, 3, 64, 64)
    truth = torch.randn(1, 2, 64, 64) * 3
    levels = level_flows(spynet, ref, supp, teacher=truth, teacher_noise=0.0)
    assert torch.equal(levels[0].flow, torch.zeros(1, 2, 2, 2))  # level 0 has no coarser level
    for level in (1, 3, 5):
        coarse = 2 * levels[level].stride
        expected = 2 * F.interpolate(F.avg_pool2d(truth, coarse) / coarse, scale_factor=2.0, mode="bilinear", align_corners=True)
        assert torch.allclose(levels[level].flow, expected, atol=1e-5)
    noisy = level_flows(spynet, ref, supp, teacher=truth, teacher_noise=1.0, generator=torch.Generator().manual_seed(0))
    error = (noisy[-1].flow - levels[-1].flow).norm(dim=1)
    assert 0 < error.max() < 6.0  # a smooth error of about a pixel


def test_huber_penalty_is_quadratic_below_delta_and_linear_above():
    from videoanyup.tasks.flow.system import masked_huber

    target, valid = torch.zeros(1, 2, 1, 2), torch.ones(1, 1, 1, 2)
    flow = torch.tensor([[[[0.6, 3.0]], [[0.8, 4.0]]]])  # errors 1 and 5
    assert masked_huber(flow, target, valid, 2.0) == pytest.approx((1 / 4 + (5 - 1)) / 2)
