"""`videoanyup features`: upsampled features of a video in fp16 shards on disk, and their loader.

    from videoanyup.tasks.features import load_features, read_index
    hr = load_features("out", frames=slice(10, 20))   # (10, C, H, W) float16, from memory-mapped shards
"""

from videoanyup.tasks.features.shards import load_features, load_lr, read_index

__all__ = ["load_features", "load_lr", "read_index"]
