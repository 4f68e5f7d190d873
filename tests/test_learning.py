"""Long learning checks, excluded from the default suite: `make test-slow`."""

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.e2e  # every test here runs train.py

REPO = __import__("pathlib").Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_demo_config_learns_reach(tmp_path):
    """The `make demo` run (MT1 reach-v3, 30k steps, 10 eval episodes) learns to reach."""
    result = subprocess.run(
        [sys.executable, "train.py", "--config=configs/demo.py", f"--workdir={tmp_path / 'demo'}"],
        cwd=REPO, capture_output=True, text=True, timeout=1800,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    evals = [json.loads(line) for line in (tmp_path / "demo" / "eval.jsonl").read_text().splitlines()]
    assert evals[0]["success"] <= 0.2, "an untrained policy should rarely reach"
    assert max(e["success"] for e in evals) >= 0.7, evals
