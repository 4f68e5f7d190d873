"""A checkpoint damaged on disk (a flipped bit, a cut-short file) is detected, set aside, and
the one before is restored (hypothesis)."""

import pathlib
import shutil
import tempfile

import jax
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mtsac_jax.checkpoint import Checkpointer

pytestmark = pytest.mark.e2e  # every test here runs train.py


def restore(workdir: pathlib.Path, abstract):
    checkpointer, warnings = Checkpointer(workdir, keep=2), []
    try:
        return checkpointer.restore_latest(abstract, warnings.append), warnings
    finally:
        checkpointer.close()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), truncate=st.booleans())
def test_a_flipped_bit_or_a_cut_short_file_of_the_newest_checkpoint_is_set_aside(smoke_run, data, truncate):
    workdir, _ = smoke_run
    steps = sorted(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())
    newest, previous = steps[-1], steps[-2]
    files = sorted(p.relative_to(workdir) for p in (workdir / "checkpoints" / str(newest)).rglob("*") if p.is_file())
    damaged_file = data.draw(st.sampled_from(files))
    with tempfile.TemporaryDirectory() as folder:
        copy = pathlib.Path(folder) / "run"
        shutil.copytree(workdir, copy)
        content = bytearray((copy / damaged_file).read_bytes())
        if truncate or not content:
            content = content[:data.draw(st.integers(0, max(len(content) - 1, 0)))]
        else:
            offset, bit = data.draw(st.integers(0, len(content) - 1)), data.draw(st.integers(0, 7))
            content[offset] ^= 1 << bit
        (copy / damaged_file).write_bytes(bytes(content))

        checkpointer = Checkpointer(workdir, keep=2, read_only=True)
        metadata = checkpointer.array_metadata(previous)
        checkpointer.close()
        abstract = jax.tree.map(lambda leaf: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype), metadata)
        (step, _, _, _), warnings = restore(copy, abstract)
        assert step == previous, f"{damaged_file} damaged, yet checkpoint {step} restored"
        assert len(warnings) == 1 and f"checkpoint {newest} could not be restored" in warnings[0]
        assert (copy / "checkpoints_corrupt").is_dir() and not (copy / "checkpoints" / str(newest)).exists()
