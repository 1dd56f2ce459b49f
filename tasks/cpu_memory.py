"""Keep freed memory in the process on Linux (glibc), instead of handing it back to the kernel.

Inference on the CPU allocates and frees frame-sized tensors (tens to hundreds of MB) every frame. glibc
serves blocks above its mmap threshold with fresh `mmap` pages and `munmap`s them on free, so each frame
pays page faults to zero the same memory again: on this project's machine `videoanyup demo` spent more
system time than user time. `keep_freed_memory()` turns that off for the process (no `mmap` for
allocations, no trimming of the heap top), so freed blocks are reused; the process keeps its peak
footprint until it exits. Every `videoanyup` command calls it (`VIDEOANYUP_KEEP_FREED_MEMORY=0` opts out);
a library user's process is left alone. Measured on 2 CPU cores, one thread: `videoanyup demo --frames 8`
32.5 s → 11.1 s wall (21.6 s → 1.1 s system time; peak memory 1.4 → 2.4 GB); 12 steps of the lite
training 37.7 s → 31.7 s (9.3 s → 2.9 s system time).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

M_TRIM_THRESHOLD = -1  # glibc mallopt parameters (malloc.h)
M_MMAP_MAX = -4


def keep_freed_memory() -> bool:
    """Ask glibc to serve every allocation from its heaps and never trim them; True if it accepted."""
    if not sys.platform.startswith("linux"):
        return False
    name = ctypes.util.find_library("c") or "libc.so.6"
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl or another C library: nothing to do
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, 2**31 - 1))
