"""bench/device/gpu.py: its dry run exercises the measurements at tiny sizes on the CPU."""

import json
import os
import pathlib
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parents[1]


def run_gpu_script(out, *args):
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    return subprocess.run([sys.executable, "bench/device/gpu.py", "--dry-run", f"--out={out}", "--seconds=0.05",
                           "--repeats=2", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def test_a_dry_run_writes_each_section_with_rates_and_a_section_over_budget_says_so(tmp_path):
    result = run_gpu_script(tmp_path, "--only=matmul,widths,seeds")
    assert result.returncode == 0, result.stderr
    update = json.loads((tmp_path / "gpu_update.json").read_text())
    assert update["environment"]["backend"] == "cpu" and update["dry_run"] is True
    widths = {name: value for name, value in update["widths"].items() if isinstance(value, dict)}
    assert set(widths) == {"critic_width/32/20", "critic_width/64/20"}
    for value in widths.values():
        assert value["per_s"]["median"] > 0 and value["flop_per_unit"] > 0 and value["of_fp32_ref"] > 0
    seeds = json.loads((tmp_path / "gpu_seeds.json").read_text())["seeds"]
    assert seeds["seeds/1"]["samples_per_s_x_one_seed"] == 1.0 and seeds["seeds/2"]["per_s"]["median"] > 0

    skipped = run_gpu_script(tmp_path / "skipped", "--only=matmul", "--budget=0")
    assert skipped.returncode == 0, skipped.stderr
    assert "budget" in json.loads((tmp_path / "skipped" / "gpu_update.json").read_text())["matmul"]["skipped"]


def test_an_unknown_section_is_refused_with_the_choices(tmp_path):
    result = run_gpu_script(tmp_path, "--only=matmul,bogus")
    assert result.returncode != 0 and "bogus" in result.stderr and "widths" in result.stderr
