"""The distributed sampler of `videoanyup features DATASET`: videos split across ranks, longest first.

Every rank computes the same plan from the same lengths: the videos sorted longest first (ties by
position) are dealt one by one to the rank with the fewest frames so far (ties: the lowest rank), the
classic longest-processing-time schedule. Each rank then walks its own videos longest first. No video is
repeated or dropped (unlike `DistributedSampler`, which pads to equal counts), so no two ranks ever
write one video. A rank with no video gets the single index −1 (`IDLE`) instead, so that every rank
runs the predict loop and its hooks (an empty loader would skip them and leave the others waiting at a
barrier).
"""

from __future__ import annotations

from typing import Iterator, Sequence

from torch.utils.data import Sampler

IDLE = -1  # the index a rank without videos gets


def plan(lengths: Sequence[int], world_size: int) -> list[list[int]]:
    """Dataset indices per rank: `plan(lengths, W)[r]` is rank r's share, longest first.

    Args:
        lengths: the frame count of each video (−1 for unknown: such videos come last, cost 1).
        world_size: the number of ranks W ≥ 1.
    """
    if world_size < 1:
        raise ValueError(f"world_size must be ≥ 1, got {world_size}")
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    shares: list[list[int]] = [[] for _ in range(world_size)]
    load = [0] * world_size
    for i in order:
        rank = min(range(world_size), key=lambda r: (load[r], r))
        shares[rank].append(i)
        load[rank] += max(int(lengths[i]), 1)
    return shares


class LongestFirstSampler(Sampler[int]):
    """Rank `rank`'s share of `plan(lengths, num_replicas)`, longest video first (`[IDLE]` if it is empty)."""

    def __init__(self, lengths: Sequence[int], *, num_replicas: int, rank: int) -> None:
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank must be in 0 … {num_replicas - 1}, got {rank}")
        self.indices = plan(lengths, num_replicas)[rank] or [IDLE]

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)
