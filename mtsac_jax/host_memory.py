"""Host memory allocation tuned for repeated XLA executions on the CPU.

Every call of a compiled XLA:CPU program allocates its temporary buffer afresh (48.5 MB for
the MT10 reference update: the activations and gradients of batch 1280 through 3x400
networks). glibc serves a block that large with a fresh `mmap` and returns it with `munmap`
on free, so each update page-faults and zeroes its whole working memory again: 17% of the
update's time on a 2-core CPU (docs/performance.md). Serving large blocks from the heap and
never trimming it lets every call reuse the pages of the last one.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_NEVER_TRIM = 2**31 - 1  # mallopt takes an int: bytes of free heap top kept before trimming


def reuse_freed_memory() -> bool:
    """Makes glibc's malloc keep freed large blocks for reuse (no `mmap` per block, no heap
    trimming). Returns whether it applied: False off glibc (macOS, musl), where it does nothing.
    The process keeps its peak memory mapped instead of returning it to the system."""
    if not sys.platform.startswith("linux"):
        return False
    name = ctypes.util.find_library("c")
    libc = ctypes.CDLL(name) if name else None
    if libc is None or not hasattr(libc, "mallopt") or not hasattr(libc, "gnu_get_libc_version"):
        return False
    return bool(libc.mallopt(_M_MMAP_MAX, 0)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, _NEVER_TRIM))
