"""Frame indexing over time."""

from __future__ import annotations


def mirrored_index(index: int, length: int) -> int:
    """Frame index with mirrored padding past the end of a clip of `length` frames (…, T−2, T−1, T−2, …).

    Clamped at 0, so a clip shorter than the padding repeats its first frame.
    """
    return index if index < length else max(0, 2 * (length - 1) - index)
