"""`cpu_runtime`: large blocks come from the heap and are kept for reuse; stand-alone matmuls
stay with XLA unless the user's XLA_FLAGS choose otherwise."""

import ast
import os
import subprocess
import sys

import pytest

from mtsac_jax.cpu_runtime import XLA_DOTS, YNN_FUSION_FLAG, on_measured_jaxlib
from tests.conftest import REPO

pytestmark = pytest.mark.e2e  # every test here starts python processes

MEASURED = on_measured_jaxlib()

PROBE = """
import ctypes, ctypes.util
from mtsac_jax.cpu_runtime import reuse_freed_memory

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


MATMUL_PROBE = """
import os
from mtsac_jax.cpu_runtime import keep_matmuls_in_xla
applied = keep_matmuls_in_xla()
import jax, jax.numpy as jnp
hlo = jax.jit(lambda a, b: a @ b).lower(jnp.ones((64, 32)), jnp.ones((32, 16))).compile().as_text()
print(repr((applied, os.environ.get("XLA_FLAGS", ""), "ynn_fusion" in hlo)))
"""


def _matmul_probe(xla_flags: str | None):
    env = {key: value for key, value in os.environ.items() if key != "XLA_FLAGS"}
    env.update({} if xla_flags is None else {"XLA_FLAGS": xla_flags})
    result = subprocess.run([sys.executable, "-c", MATMUL_PROBE], cwd=REPO, env=env, capture_output=True, text=True,
                            check=True)
    return ast.literal_eval(result.stdout)


def test_a_lone_matmul_compiles_to_xlas_own_dot_on_the_measured_jaxlib():
    applied, flags, ynn = _matmul_probe(None)
    if MEASURED:
        assert (applied, flags, ynn) == (True, XLA_DOTS, False)
    else:
        assert (applied, flags) == (False, "")  # another release line keeps its own default


@pytest.mark.skipif(not MEASURED, reason="the flag is known to the measured jaxlib release line")
def test_the_users_own_choice_of_matmul_backend_stands():
    own = f"{YNN_FUSION_FLAG}=+individual_dot"  # jaxlib's default, named
    assert _matmul_probe(own) == (False, own, True)
