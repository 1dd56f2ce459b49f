"""Loading BasicAVSR weights for the command line: checkpoint folders, bundled names or Lightning `.ckpt`s.

A `.ckpt` written by `AVSRSystem` carries the network's config (`checkpoint["basicavsr"]`) and its
weights under the `model.` prefix; it is rebuilt and loaded strictly, like a `save_pretrained` folder.
"""

from __future__ import annotations

from pathlib import Path

import torch

from videoanyup.checkpoint import bundled_names, load_state_strict
from videoanyup.models.basicavsr import BasicAVSR, BasicAVSRConfig

DEFAULT_BUNDLED = "lite"


def load_weights(path_or_name: str | Path | None) -> BasicAVSR:
    """A trained `BasicAVSR` in eval mode.

    Args:
        path_or_name: a folder from `save_pretrained`, the name of bundled weights, a Lightning `.ckpt`
            from `videoanyup train`, or None for the bundled "lite" weights.
    Raises:
        ValueError naming the path when nothing loadable is there or the weights do not fit their config.
    """
    if path_or_name is None:
        if DEFAULT_BUNDLED not in bundled_names("basicavsr"):
            raise ValueError(
                "no --weights given and no bundled BasicAVSR weights are installed yet: pass --weights with a "
                "checkpoint folder (written by `videoanyup train`, <log dir>/basicavsr) or a .ckpt file"
            )
        path_or_name = DEFAULT_BUNDLED
    path = Path(path_or_name)
    if path.suffix == ".ckpt":
        model = _from_lightning(path)
    else:
        model = BasicAVSR.from_pretrained(path_or_name)
    return model.eval()


def _from_lightning(path: Path) -> BasicAVSR:
    if not path.is_file():
        raise ValueError(f"weights {str(path)!r} do not exist")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - any unpickling failure means the same to the user
        raise ValueError(f"cannot read Lightning checkpoint {str(path)!r}: {error}") from error
    record = checkpoint.get("basicavsr") if isinstance(checkpoint, dict) else None
    if record is None:
        raise ValueError(f"{str(path)!r} is not a checkpoint of `videoanyup train` for BasicAVSR (no 'basicavsr' entry)")
    try:
        config = BasicAVSRConfig(**record["config"])
    except TypeError as error:
        raise ValueError(f"{str(path)!r} has a BasicAVSR config this version does not know: {error}") from error
    model = BasicAVSR(config, trained_modes=record.get("trained_modes"))
    state = {k[len("model.") :]: v for k, v in checkpoint["state_dict"].items() if k.startswith("model.")}
    load_state_strict(model, state, str(path))
    return model
