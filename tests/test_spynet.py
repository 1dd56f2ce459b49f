import pytest
import torch

from videoanyup.layers.spynet import BASIC_MODULE_WIDTHS, LEVELS, SPyNet


def published_layout(seed=0):
    """A state dict with the key layout of `spynet_20210409-c6c1bd09.pth` (mmedit), as the file wraps it."""
    g = torch.Generator().manual_seed(seed)
    state = {"mean": torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), "std": torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)}
    for level in range(LEVELS):
        for j in range(5):
            c_in, c_out = BASIC_MODULE_WIDTHS[j], BASIC_MODULE_WIDTHS[j + 1]
            prefix = f"basic_module.{level}.basic_module.{j}.conv"
            state[f"{prefix}.weight"] = torch.randn(c_out, c_in, 7, 7, generator=g) * 0.01
            state[f"{prefix}.bias"] = torch.randn(c_out, generator=g) * 0.01
    return {"meta": {"mmedit_version": "0.x"}, "state_dict": state}


def test_loads_published_key_layout():
    checkpoint = published_layout()
    net = SPyNet()
    net.load_published(checkpoint)
    own = net.state_dict()
    assert len(own) == LEVELS * 5 * 2
    for key, value in checkpoint["state_dict"].items():
        if "basic_module" in key:
            assert torch.equal(own[key], value)


def test_loads_basicsr_layout_and_prefixes():
    source = published_layout(1)["state_dict"]
    basicsr = {}
    for key, value in source.items():
        if "basic_module" in key:
            level, j, _, kind = key.split(".")[1], int(key.split(".")[3]), key.split(".")[4], key.split(".")[5]
            basicsr[f"generator.spynet.basic_module.{level}.basic_module.{2 * j}.{kind}"] = value
    net = SPyNet()
    net.load_published({"params": basicsr})
    assert torch.equal(net.basic_module[3].basic_module[2].conv.weight, source["basic_module.3.basic_module.2.conv.weight"])


def test_published_loading_names_missing_and_unexpected_keys():
    state = published_layout()["state_dict"]
    del state["basic_module.2.basic_module.4.conv.bias"]
    state["basic_module.9.extra.weight"] = torch.zeros(1)
    with pytest.raises(ValueError, match=r"missing keys: basic_module\.2\.basic_module\.4\.conv\.bias.*unexpected keys: basic_module\.9"):
        SPyNet().load_published(state)


@pytest.mark.parametrize("size", [(64, 64), (37, 50), (20, 28)])
def test_flow_shape_any_size_and_zero_weights_give_zero_flow(size):
    net = SPyNet()
    ref, supp = torch.rand(2, 3, *size), torch.rand(2, 3, *size)
    assert net(ref, supp).shape == (2, 2, *size)
    for p in net.parameters():
        torch.nn.init.zeros_(p)
    assert net(ref, supp).abs().max() == 0


def test_rejects_bad_frames():
    with pytest.raises(ValueError, match=r"ref and supp must both be \(N, 3, h, w\)"):
        SPyNet()(torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 31))
