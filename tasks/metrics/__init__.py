"""Image-quality metrics of the super-resolution papers: PSNR and SSIM, in RGB or on the BT.601 luma."""

from videoanyup.tasks.metrics.luma import rgb_to_y
from videoanyup.tasks.metrics.psnr import psnr
from videoanyup.tasks.metrics.ssim import gaussian_window, ssim
from videoanyup.tasks.metrics.video_quality import QualitySums, quantize

__all__ = ["QualitySums", "gaussian_window", "psnr", "quantize", "rgb_to_y", "ssim"]
