"""bench/device/gpu.py: its dry run exercises the measurements at tiny sizes on the CPU."""

import importlib.util
import json

import pytest

from tests.conftest import REPO


@pytest.fixture(scope="module")
def gpu_script():
    spec = importlib.util.spec_from_file_location("gpu_bench", REPO / "bench" / "device" / "gpu.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_dry_run_writes_each_section_with_rates_and_a_section_over_budget_says_so(gpu_script, tmp_path):
    gpu_script.main(["--dry-run", f"--out={tmp_path}", "--seconds=0.05", "--repeats=2", "--no-big-matmul",
                     "--only=matmul,widths,seeds"])
    update = json.loads((tmp_path / "gpu_update.json").read_text())
    assert update["environment"]["backend"] == "cpu" and update["dry_run"] is True
    widths = {name: value for name, value in update["widths"].items() if isinstance(value, dict)}
    assert set(widths) == {"critic_width/32/20", "critic_width/64/20"}
    for value in widths.values():
        assert value["per_s"]["median"] > 0 and value["flop_per_unit"] > 0 and value["of_fp32_ref"] > 0
    seeds = json.loads((tmp_path / "gpu_seeds.json").read_text())["seeds"]
    assert seeds["seeds/1"]["samples_per_s_x_one_seed"] == 1.0 and seeds["seeds/2"]["per_s"]["median"] > 0

    gpu_script.main(["--dry-run", f"--out={tmp_path / 'skipped'}", "--only=matmul", "--budget=0"])
    assert "budget" in json.loads((tmp_path / "skipped" / "gpu_update.json").read_text())["matmul"]["skipped"]


def test_an_unknown_section_is_refused_with_the_choices(gpu_script, tmp_path, capsys):
    with pytest.raises(SystemExit):
        gpu_script.main(["--dry-run", f"--out={tmp_path}", "--only=matmul,bogus"])
    error = capsys.readouterr().err
    assert "bogus" in error and "widths" in error
