"""videoanyup: arbitrary-scale upsampling of video, in pixels (BasicAVSR) and in features (VideoAnyUp).

The public names are imported on first use (PEP 562), so `import videoanyup.tasks.cli` starts at once
and the command line can answer Ctrl-C with one line even while PyTorch is still loading.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_PUBLIC = {
    "upsample": "videoanyup.api",
    "upsample_stream": "videoanyup.api",
    "BasicAVSR": "videoanyup.models.basicavsr",
    "BasicAVSRConfig": "videoanyup.models.basicavsr",
    "VideoAnyUp": "videoanyup.models.videoanyup",
    "VideoAnyUpConfig": "videoanyup.models.videoanyup",
}

__all__ = ["BasicAVSR", "BasicAVSRConfig", "VideoAnyUp", "VideoAnyUpConfig", "upsample", "upsample_stream", "__version__"]


def __getattr__(name: str):
    if name in _PUBLIC:
        value = getattr(importlib.import_module(_PUBLIC[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'videoanyup' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_PUBLIC))
