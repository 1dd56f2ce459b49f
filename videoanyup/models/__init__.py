"""The two networks."""

from videoanyup.models.basicavsr import CONFIGS, MODES, BasicAVSR, BasicAVSRConfig
from videoanyup.models.videoanyup import VideoAnyUp, VideoAnyUpConfig
from videoanyup.models.videoanyup_stream import VideoAnyUpStream

__all__ = ["BasicAVSR", "BasicAVSRConfig", "CONFIGS", "MODES", "VideoAnyUp", "VideoAnyUpConfig", "VideoAnyUpStream"]
