"""The peer benchmark (bench/peer_update.py) and its workers (bench/workers.py), on numpy's
matmul and systems of a test plugin: no peer venv, a few seconds."""

import importlib.util
import json
import pathlib

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("peer_update", REPO / "bench" / "peer_update.py")
peer_update = importlib.util.module_from_spec(spec)
spec.loader.exec_module(peer_update)

PLUGIN = '''
import time


def make(config):
    return {"train": lambda count: time.sleep(0.001 * count), "batch": config["batch"]}


def broken(config):
    raise ValueError("no network of that name")
'''


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One run of numpy's matmul, a system taking 1 ms per update, and one that fails to build."""
    folder = tmp_path_factory.mktemp("peer_update")
    plugin = folder / "plugin.py"
    plugin.write_text(PLUGIN)
    out = folder / "out.json"
    with pytest.raises(SystemExit) as exit_info:
        peer_update.main(["--systems", "numpy_matmul", "--system", f"ms={plugin}:make",
                          "--system", f"broken={plugin}:broken", "--seconds", "0.05", "--repeats", "2",
                          "--json", str(out)])
    return json.loads(out.read_text()), str(exit_info.value)


def test_results_of_the_measured_systems(run):
    results, _ = run
    assert results["flop_per_update"]["total"] == 2 * 1280 * 5_369_200  # the docstring's count
    numpy_result, ms = results["systems"]["numpy_matmul"], results["systems"]["ms"]
    assert len(numpy_result["calls"]) == len(ms["calls"]) == 2
    assert numpy_result["gflops"]["median"] > 0 and numpy_result["of_numpy_matmul"] == 1
    assert 200 < ms["updates_per_s"]["median"] <= 1000
    assert ms["gflops"]["median"] == pytest.approx(ms["updates_per_s"]["median"] * 13.745, rel=1e-3)
    assert ms["of_numpy_matmul"] == pytest.approx(ms["gflops"]["median"] / numpy_result["gflops"]["median"])
    assert ms["ready"]["details"] == {"batch": 1280} and ms["ready"]["G"] >= 1


def test_a_failing_system_is_reported_and_the_others_still_run(run):
    results, message = run
    assert message == "failed: broken (the errors are above and in the JSON)"
    error = results["systems"]["broken"]["error"]
    assert error.startswith("broken (") and "ValueError: no network of that name" in error
    assert "calls" not in results["systems"]["broken"]


def test_peers_without_their_python_are_refused_with_the_way_to_make_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(peer_update, "PEER_VENV", tmp_path / "no-venv")
    with pytest.raises(SystemExit):
        peer_update.main(["--systems", "numpy_matmul,sbx"])
    assert "sbx need --peer-python" in capsys.readouterr().err
