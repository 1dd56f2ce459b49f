"""`videoanyup features`: upsampled features of a video or a whole dataset in fp16 shards, and their loaders.

    from videoanyup.tasks.features import FeatureDataset, load_features, read_index
    hr = load_features("out", frames=slice(10, 20))                 # one video's output: (10, C, H, W) float16
    hr = load_features("out", video="bmx-trees", frames=slice(0, 8))  # one video of a dataset output
    data = FeatureDataset("out", clip_frames=8)                     # (video, frame range) items for training
"""

from videoanyup.tasks.features.reader import FeatureDataset, finished_videos, load_features
from videoanyup.tasks.features.shards import load_lr, read_index

__all__ = ["FeatureDataset", "finished_videos", "load_features", "load_lr", "read_index"]
