"""videoanyup: arbitrary-scale upsampling of video, in pixels (BasicAVSR) and in features (VideoAnyUp)."""

from videoanyup.api import upsample, upsample_stream
from videoanyup.models.basicavsr import BasicAVSR, BasicAVSRConfig
from videoanyup.models.videoanyup import VideoAnyUp, VideoAnyUpConfig

__version__ = "0.1.0"

__all__ = ["BasicAVSR", "BasicAVSRConfig", "VideoAnyUp", "VideoAnyUpConfig", "upsample", "upsample_stream", "__version__"]
