"""videoanyup: arbitrary-scale upsampling of video, in pixels (BasicAVSR) and in features (VideoAnyUp)."""

from videoanyup.models.basicavsr import BasicAVSR, BasicAVSRConfig

__version__ = "0.1.0"

__all__ = ["BasicAVSR", "BasicAVSRConfig", "__version__"]
