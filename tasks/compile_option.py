"""The `compile` option of the training systems: the network's forward through `torch.compile`.

`nn.Module.compile` compiles the module's call in place, so the parameters, the optimiser's view of them
and the checkpoint's state-dict keys stay what they are (no `_orig_mod.` prefix). Training draws scales,
grids and modes per step, so shapes change: torch.compile marks them dynamic after the first recompile,
and Python-level branches it cannot trace run eagerly between compiled graphs.
"""

from __future__ import annotations

from torch import nn


def check_compile(compile: bool | str, name: str = "compile") -> bool | str:
    """`compile` is False, True (inductor) or a torch.compile backend's name."""
    if not isinstance(compile, (bool, str)) or compile == "":
        raise ValueError(f"{name} must be true, false or a torch.compile backend name (e.g. 'inductor'), got {compile!r}")
    return compile


def compile_forward(model: nn.Module, compile: bool | str) -> None:
    """Compile `model`'s forward in place when `compile` asks for it (see the module docstring)."""
    if check_compile(compile):
        model.compile(backend="inductor" if compile is True else compile)
