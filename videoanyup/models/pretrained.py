"""What both networks share: named configurations, checkpoints and the modes their weights serve.

A network subclasses `ConfiguredNetwork` and names its config dataclass, its named configurations, its
propagation modes and its checkpoint kind (the folder of its bundled weights).
"""

from __future__ import annotations

from dataclasses import asdict, fields, replace
from pathlib import Path
from typing import Any, ClassVar, Sequence

from torch import nn

from videoanyup.checkpoint import (
    CONFIG_FILE,
    build_from_config,
    load_state_strict,
    read_checkpoint,
    resolve_checkpoint,
    save_checkpoint,
)


class ConfiguredNetwork(nn.Module):
    """Base of `BasicAVSR` and `VideoAnyUp`.

    Subclasses set `config_class`, `configs`, `modes`, `stream_modes` (the modes a stream runs), `kind` and call
    `super().__init__(config, trained_modes)`.
    """

    config_class: ClassVar[type]
    configs: ClassVar[dict[str, Any]]
    modes: ClassVar[tuple[str, ...]]
    stream_modes: ClassVar[tuple[str, ...]]
    kind: ClassVar[str]

    def __init__(self, config: Any, trained_modes: Sequence[str] | None) -> None:
        super().__init__()
        if config.mode not in self.modes:
            raise ValueError(f"config.mode must be one of {self.modes}, got {config.mode!r}")
        self.config = config
        self.trained_modes = None if trained_modes is None else tuple(trained_modes)

    @classmethod
    def from_config(cls, name: str, **overrides):
        """A fresh network of a named configuration, with optional field overrides."""
        if name not in cls.configs:
            raise ValueError(f"name must be one of {sorted(cls.configs)}, got {name!r}")
        known = {f.name for f in fields(cls.config_class)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ValueError(f"unknown {cls.config_class.__name__} fields {unknown}; known: {sorted(known)}")
        return cls(replace(cls.configs[name], **overrides))

    def save_pretrained(self, folder: str | Path) -> Path:
        """Write `model.safetensors` and `config.json` (architecture + the modes the weights serve)."""
        modes = None if self.trained_modes is None else list(self.trained_modes)
        return save_checkpoint(folder, self, asdict(self.config) | {"trained_modes": modes})

    @classmethod
    def from_pretrained(cls, path_or_name: str | Path):
        """Load a checkpoint folder, or bundled weights by name, strictly; returned in eval mode (as
        transformers does: no layer of either network behaves differently in training, so this only makes the
        module's state say what it is for)."""
        folder = resolve_checkpoint(path_or_name, cls.kind)
        record, state = read_checkpoint(folder)
        trained_modes = record.pop("trained_modes", None)
        known = {f.name for f in fields(cls.config_class)}
        unknown = sorted(set(record) - known)
        if unknown:
            raise ValueError(f"{folder}/config.json has fields {cls.config_class.__name__} does not know: {unknown}")
        model = build_from_config(folder / CONFIG_FILE, lambda: cls(cls.config_class(**record), trained_modes=trained_modes))
        load_state_strict(model, state, str(folder))
        return model.eval()

    def check_mode(self, mode: str | None) -> str:
        """The mode to run (default: the config's); refuses modes the weights were not trained for."""
        mode = self.config.mode if mode is None else mode
        if mode not in self.modes:
            raise ValueError(f"mode must be one of {self.modes}, got {mode!r}")
        if self.trained_modes is not None and mode not in self.trained_modes:
            raise ValueError(
                f"mode={mode!r}: these weights were trained for {list(self.trained_modes)} only; other modes "
                "are out of distribution (train a checkpoint for that mode, or pick one of those)"
            )
        return mode

    def default_stream_mode(self) -> str:
        """The mode a stream runs when none is given: the model's own if it streams and the weights serve it,
        else the first streaming mode the weights were trained for."""
        trained = self.stream_modes if self.trained_modes is None else self.trained_modes
        for mode in (self.config.mode, *self.stream_modes):
            if mode in self.stream_modes and mode in trained:
                return mode
        raise ValueError(
            f"these weights were trained for {list(self.trained_modes)} only, and none of them streams; "
            f"a stream needs one of {list(self.stream_modes)}"
        )
