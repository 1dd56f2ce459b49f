"""Loading SPyNet weights by name: bundled (`videoanyup/weights/spynet/<name>/`), a folder, a training `.ckpt`,
or the published `spynet_20210409-c6c1bd09.pth`."""

from __future__ import annotations

from pathlib import Path

import torch

from videoanyup.checkpoint import load_state_strict, read_checkpoint, resolve_checkpoint
from videoanyup.layers.spynet import SPyNet

KIND = "spynet"
DEFAULT_NAME = "synthetic"


def load_spynet(path_or_name: str | Path = DEFAULT_NAME) -> SPyNet:
    """A SPyNet with the weights at `path_or_name` (strict: an error names missing and unexpected keys)."""
    path = Path(path_or_name)
    spynet = SPyNet()
    if path.is_file() and path.suffix in (".ckpt", ".pth", ".pt"):
        state = torch.load(path, map_location="cpu", weights_only=False)
        if path.suffix == ".ckpt":  # a FlowPretraining checkpoint: the network's weights under "spynet."
            state = {k[len("spynet.") :]: v for k, v in state["state_dict"].items() if k.startswith("spynet.")}
            load_state_strict(spynet, state, str(path))
        else:
            spynet.load_published(state)
        return spynet
    _, state = read_checkpoint(resolve_checkpoint(path_or_name, KIND))
    load_state_strict(spynet, state, str(path_or_name))
    return spynet
