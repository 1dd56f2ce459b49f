"""A tiny VideoAnyUp whose temporal parts are not at their zero initialisation (shared by the attention tests)."""

from __future__ import annotations

import torch

from videoanyup.models.videoanyup import VideoAnyUp


def tiny_net(temporal: bool = True, blend: bool = True) -> VideoAnyUp:
    """`CONFIGS["tiny"]`, seed 0, eval mode; with neighbour windows, a random Δt bias and offset head."""
    torch.manual_seed(0)
    net = VideoAnyUp.from_config("tiny", temporal_window=3 if temporal else 0, temporal_blend=blend).eval()
    if temporal:
        torch.nn.init.normal_(net.temporal.delta_bias, std=1.0)
        torch.nn.init.normal_(net.temporal.offset[-1].weight, std=0.3)
    return net
