"""`host_memory.reuse_freed_memory`: large blocks come from the heap and are kept for reuse."""

import ast
import subprocess
import sys

import pytest

from tests.conftest import REPO

PROBE = """
import ctypes, ctypes.util
from mtsac_jax.host_memory import reuse_freed_memory

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]

libc = ctypes.CDLL(ctypes.util.find_library("c"))
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
libc.mallinfo2.restype = MallInfo2
size = 48 << 20  # the MT10 reference update's temporary buffer

def probe():
    block = libc.malloc(size)
    mapped = libc.mallinfo2().hblkhd >= size  # served by its own mmap
    libc.free(block)
    kept = libc.mallinfo2().fordblks >= size  # still in the heap after free
    again = libc.malloc(size)
    libc.free(again)
    return mapped, kept, again == block

print(repr((probe(), reuse_freed_memory(), probe())))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="tunes glibc's malloc")
def test_large_blocks_come_from_the_heap_and_stay_there_for_the_next_call():
    result = subprocess.run([sys.executable, "-c", PROBE], cwd=REPO, capture_output=True, text=True, check=True)
    before, applied, after = ast.literal_eval(result.stdout)
    assert before[:2] == (True, False)  # glibc's default: a fresh mmap, unmapped on free
    assert applied and after == (False, True, True)  # from the heap, kept, and reused
