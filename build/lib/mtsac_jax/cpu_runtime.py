"""Process settings under which the compiled SAC update runs fastest on a CPU.

Two settings, both measured on the MT10 reference update (docs/performance.md, section 1):

- *Memory reuse.* Every call of a compiled XLA:CPU program allocates its temporary buffer
  afresh (48.5 MB for the MT10 reference update: the activations and gradients of batch 1280
  through 3x400 networks). glibc serves a block that large with a fresh `mmap` and returns it
  with `munmap` on free, so each update page-faults and zeroes its whole working memory again:
  17% of the update's time on a 2-core CPU. Serving large blocks from the heap and never
  trimming it lets every call reuse the pages of the last one.
- *Matmul backend.* jaxlib 0.10 hands every matmul that stands alone to YNNPACK; XLA's own
  matmul runs the update's 1280x400 by 400x400 products faster (`bench/xla_flags.py`), so the
  XLA flag `--xla_cpu_experimental_ynn_fusion_type=-individual_dot` keeps them with XLA.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

import jaxlib

_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_NEVER_TRIM = 2**31 - 1  # mallopt takes an int: bytes of free heap top kept before trimming
YNN_FUSION_FLAG = "--xla_cpu_experimental_ynn_fusion_type"
XLA_DOTS = f"{YNN_FUSION_FLAG}=-individual_dot"
MEASURED_JAXLIB = (0, 10)  # the jaxlib release line whose flags and speeds were measured


def tune_cpu_process() -> None:
    """Applies both settings; call it before JAX's first computation."""
    reuse_freed_memory()
    keep_matmuls_in_xla()


def on_measured_jaxlib() -> bool:
    """Whether the installed jaxlib is from `MEASURED_JAXLIB`'s release line."""
    return tuple(int(part) for part in jaxlib.__version__.split(".")[:2]) == MEASURED_JAXLIB


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


def keep_matmuls_in_xla() -> bool:
    """Adds `XLA_DOTS` to `XLA_FLAGS` so XLA:CPU compiles stand-alone matmuls itself instead of
    calling YNNPACK. Returns whether it did: not when `XLA_FLAGS` already chooses
    (the user's choice stands), and not on a jaxlib other than the measured release line, which
    may lack the flag (XLA aborts on an unknown flag) or choose better itself. Takes effect only
    if JAX has not yet started its CPU backend."""
    flags = os.environ.get("XLA_FLAGS", "")
    if YNN_FUSION_FLAG in flags or not on_measured_jaxlib():
        return False
    os.environ["XLA_FLAGS"] = f"{flags} {XLA_DOTS}".strip()
    return True
