"""Checkpoint files of the pure networks: `model.safetensors` + `config.json` in one folder.

Both networks save and load through here, so loading is strict in one place and its errors name what is
missing and what is unexpected.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
BUNDLED_WEIGHTS = Path(__file__).parent / "weights"


def bundled_names(kind: str) -> list[str]:
    """Names of the weights shipped inside the package for `kind` ("basicavsr" or "videoanyup")."""
    folder = BUNDLED_WEIGHTS / kind
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if (p / WEIGHTS_FILE).is_file())


def resolve_checkpoint(path_or_name: str | Path, kind: str) -> Path:
    """A checkpoint folder: an existing path, or the name of bundled weights."""
    path = Path(path_or_name)
    if path.is_dir() and (path / WEIGHTS_FILE).is_file():
        return path
    if path.is_file() and path.name == WEIGHTS_FILE:
        return path.parent
    bundled = BUNDLED_WEIGHTS / kind / str(path_or_name)
    if (bundled / WEIGHTS_FILE).is_file():
        return bundled
    names = bundled_names(kind)
    raise ValueError(
        f"path_or_name={str(path_or_name)!r} is neither a folder with {WEIGHTS_FILE} and {CONFIG_FILE} "
        f"nor the name of bundled {kind} weights (bundled: {names if names else 'none yet'})"
    )


def save_checkpoint(folder: str | Path, model: nn.Module, config: dict[str, Any]) -> Path:
    """Write `model.state_dict()` as safetensors and `config` as JSON into `folder`."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(state, str(folder / WEIGHTS_FILE), metadata={"format": "pt"})
    (folder / CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    return folder


def read_checkpoint(folder: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """The config dict and the state dict stored in a checkpoint folder."""
    from safetensors.torch import load_file

    config_path = folder / CONFIG_FILE
    if not config_path.is_file():
        raise ValueError(f"checkpoint folder {str(folder)!r} has no {CONFIG_FILE}")
    try:
        config = json.loads(config_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"cannot read {str(config_path)!r}: it is not valid JSON ({error})") from error
    if not isinstance(config, dict):
        raise ValueError(f"{str(config_path)!r} must hold a JSON object of config fields, got {type(config).__name__}")
    weights_path = folder / WEIGHTS_FILE
    try:
        state = load_file(str(weights_path))
    except Exception as error:  # noqa: BLE001 - safetensors raises its own error types for bad headers and data
        raise ValueError(
            f"cannot read weights {str(weights_path)!r}: the file is empty, truncated or not a safetensors file ({error})"
        ) from error
    return config, state


def build_from_config(config_path: Path, build):
    """`build()` (a network from a checkpoint's config), with any error it raises naming `config_path`."""
    try:
        return build()
    except (TypeError, ValueError, RuntimeError) as error:
        raise ValueError(f"{str(config_path)!r} describes a network that cannot be built: {error}") from error


def load_state_strict(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """`load_state_dict(strict=True)` with an error that lists missing, unexpected and mis-shaped keys."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    mismatched = sorted(
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in set(own) & set(state)
        if own[k].shape != state[k].shape
    )
    if missing or unexpected or mismatched:

        def head(keys: list[str]) -> str:
            return ", ".join(keys[:8]) + (f", … ({len(keys)} in all)" if len(keys) > 8 else "") if keys else "none"

        raise ValueError(
            f"weights from {source} do not fit {type(model).__name__}: missing keys: {head(missing)}; "
            f"unexpected keys: {head(unexpected)}; shape mismatches: {head(mismatched)}"
        )
    model.load_state_dict(state, strict=True)
