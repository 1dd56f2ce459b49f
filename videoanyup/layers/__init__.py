"""Building blocks of both networks, one concept per file."""

from videoanyup.layers.attention_backend import attention_probabilities
from videoanyup.layers.deformable_alignment import SecondOrderDeformableAlignment
from videoanyup.layers.feature_agnostic import FeatureAgnosticLayer
from videoanyup.layers.feature_propagation import FeaturePropagation
from videoanyup.layers.frequency_prior import FrequencyPrior
from videoanyup.layers.guidance_encoder import GuidanceEncoder
from videoanyup.layers.hyper_kernel import HyperKernel
from videoanyup.layers.hyper_upsampler import HyperUpsampler
from videoanyup.layers.local_attention import FlowGuidedWindowAttention
from videoanyup.layers.motion_compensation import SecondOrderMotionCompensation
from videoanyup.layers.residual import ResidualBlock, ResidualStack
from videoanyup.layers.spynet import SPyNet
from videoanyup.layers.window_attention import WindowAttention, WindowPlan

__all__ = [
    "FeatureAgnosticLayer",
    "FeaturePropagation",
    "FlowGuidedWindowAttention",
    "FrequencyPrior",
    "GuidanceEncoder",
    "HyperKernel",
    "HyperUpsampler",
    "ResidualBlock",
    "ResidualStack",
    "SPyNet",
    "SecondOrderDeformableAlignment",
    "SecondOrderMotionCompensation",
    "WindowAttention",
    "WindowPlan",
    "attention_probabilities",
]
