"""The two networks."""

from videoanyup.models.basicavsr import CONFIGS, MODES, BasicAVSR, BasicAVSRConfig

__all__ = ["BasicAVSR", "BasicAVSRConfig", "CONFIGS", "MODES"]
