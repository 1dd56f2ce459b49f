"""Stateless operations shared by both networks."""

from videoanyup.functional.grid import AxisPhases, axis_phases, num_phases, output_size
from videoanyup.functional.laplacian import laplacian_pyramid, reconstruct_laplacian
from videoanyup.functional.resize import bicubic_upsample, bilinear_upsample, downsample, upsample
from videoanyup.functional.warp import compose_flows, flow_warp

__all__ = [
    "AxisPhases",
    "axis_phases",
    "bicubic_upsample",
    "bilinear_upsample",
    "compose_flows",
    "downsample",
    "flow_warp",
    "laplacian_pyramid",
    "num_phases",
    "output_size",
    "reconstruct_laplacian",
    "upsample",
]
