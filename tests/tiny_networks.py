"""Tiny VideoAnyUp networks whose learned parts are not at their zero initialisation (shared by the tests)."""

from __future__ import annotations

import torch

from videoanyup.models.videoanyup import VideoAnyUp


def tiny_net(neighbours: bool = True, seed: int = 0) -> VideoAnyUp:
    """`CONFIGS["tiny"]`, eval mode; the zero-initialised heads (Δt bias, offsets, displacement and agreement biases,
    guidance fusion, shot test) given random weights so that every part acts. `neighbours=False`: the ablation
    without neighbour windows (`neighbour_window=0`)."""
    torch.manual_seed(seed)
    net = VideoAnyUp.from_config("tiny", **({} if neighbours else dict(neighbour_window=0))).eval()
    torch.nn.init.normal_(net.shot.net[-1].weight, std=0.3)
    if neighbours:
        torch.nn.init.normal_(net.temporal.delta_bias, std=1.0)
        torch.nn.init.normal_(net.temporal.offset[-1].weight, std=0.3)
        torch.nn.init.normal_(net.temporal.displacement.net[-1].weight, std=1.0)
        torch.nn.init.normal_(net.temporal.agreement.net[-1].weight, std=0.1)
        torch.nn.init.normal_(net.fusion.net[-1].weight, std=0.3)
    return net
