"""Bad input ends in one clear message and a non-zero exit, never a traceback.

Command lines are parsed in-process through train.py's own flag parser and config check
(`parse_flags`, `load_config_or_exit`): an exception escaping them is what a user would see
as a traceback. A few end-to-end commands run as subprocesses.
"""

import json
import re
import math
import os
import pathlib
import shutil
import subprocess
import sys

import pytest
from absl import flags
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mtsac_jax
from mtsac_jax import policy as policy_module
from mtsac_jax.checkpoint import CheckpointError
from mtsac_jax.cli import parse_flags, load_config_or_exit
from mtsac_jax.config import compose, flatten
from mtsac_jax.run_log import keep_records_up_to
from tests.conftest import REPO, SMOKE

sys.path.insert(0, str(REPO))
import train  # noqa: E402  (defines train.py's flags)

SETTINGS = settings(max_examples=40, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
CONFIG = compose("metaworld", "state_sac", "metaworld-mt1", task_name="reach-v3", smoke=True)
LEAVES = flatten(CONFIG.to_dict())
SECTIONS = sorted({key.rsplit(".", 1)[0] for key in LEAVES if "." in key})
NAMES = {"setup.name", "agent.name", "agent.network.name", "agent.gradient.name", "env.name", "env.task_name"}
POSITIVE = [key for key, value in LEAVES.items()
            if type(value) is int and key not in NAMES and key != "experiment.init_steps" and key != "seed"]


def command_line(*args, config=SMOKE):
    """(config, None) for a command line train.py accepts, (None, message) for one it refuses."""
    argv = ["train.py", config, *args, "--print_config"]
    for name in [name for name in flags.FLAGS if name.startswith("config.")]:
        delattr(flags.FLAGS, name)  # ml_collections defines one flag per override at each parse
    flags.FLAGS.unparse_flags()
    sys.modules.pop("config_config", None)  # ml_collections' module of the config file, reused by name
    saved, sys.argv[:] = sys.argv[:], argv  # ml_collections reads the overrides from sys.argv
    try:
        parse_flags(argv)
        return load_config_or_exit(train._CONFIG), None
    except SystemExit as exit_:
        return None, str(exit_.code)
    finally:
        sys.argv[:] = saved


def assert_refused(message, *names):
    assert message is not None, "accepted"
    assert message.startswith("error: ") and "Traceback" not in message and "\n\n" not in message
    for name in names:
        assert name in message, message


def misspell(word, data):
    """`word` with one character dropped, doubled or swapped for another (never a valid name)."""
    at = data.draw(st.integers(0, len(word) - 1))
    return data.draw(st.sampled_from([word[:at] + word[at + 1:], word[:at + 1] + word[at:], word[:at] + "q" + word[at + 1:]]))


@SETTINGS
@given(st.data())
def test_random_invalid_overrides_are_refused_in_one_message(data):
    kind = data.draw(st.sampled_from(["misspelled", "type", "range", "non-finite"]))
    if kind == "misspelled":  # a misspelled section as much as a misspelled leaf
        key = data.draw(st.sampled_from(sorted(LEAVES)))
        parts = key.split(".")
        depth = data.draw(st.integers(0, len(parts) - 1))
        parts[depth] = misspell(parts[depth], data)
        prefix = ".".join(parts[:depth])
        if ".".join(parts) in LEAVES or (prefix + "." if prefix else "") + parts[depth] in SECTIONS:
            return  # the misspelling happens to be another key
        _, message = command_line(f"--config.{'.'.join(parts)}=1")
        assert_refused(message, "unknown config key", parts[depth])
    elif kind == "type":
        key = data.draw(st.sampled_from(sorted(k for k, v in LEAVES.items() if type(v) in (int, float, bool))))
        kind_of = type(LEAVES[key])
        bad = data.draw(st.sampled_from({int: ["abc", "1.5", "1e3", "", "[1]"], float: ["abc", "", "0,5", "one"],
                                         bool: ["maybe", "2", "yes please", ""]}[kind_of]))
        _, message = command_line(f"--config.{key}={bad}")
        assert_refused(message, f"--config.{key}")
    elif kind == "range":
        key = data.draw(st.sampled_from(POSITIVE + ["agent.discount", "agent.critic_tau", "seed",
                                                    "experiment.init_steps", "env.max_episode_steps"]))
        if key in ("agent.discount", "agent.critic_tau"):
            value = data.draw(st.one_of(st.floats(max_value=0.0, allow_nan=False, allow_infinity=False),
                                        st.floats(min_value=1.0, exclude_min=True, allow_infinity=False)))
        elif key == "seed":
            value = data.draw(st.one_of(st.integers(max_value=-1), st.integers(min_value=2**32)))
        elif key == "env.max_episode_steps":
            value = data.draw(st.one_of(st.integers(max_value=0), st.integers(min_value=501)))
        elif key == "experiment.init_steps":
            value = data.draw(st.integers(max_value=-1))
        else:
            value = data.draw(st.integers(max_value=0))
        _, message = command_line(f"--config.{key}={value}")
        assert_refused(message, key)
    else:
        key = data.draw(st.sampled_from(sorted(k for k, v in LEAVES.items() if type(v) is float)))
        value = data.draw(st.sampled_from(["nan", "inf", "-inf"]))
        _, message = command_line(f"--config.{key}={value}")
        assert_refused(message, key)


VALID = {
    "seed": st.integers(0, 2**32 - 1),
    "agent.discount": st.floats(0.5, 1.0),
    "agent.critic_tau": st.floats(0.001, 1.0),
    "agent.init_temperature": st.floats(0.01, 10.0),
    "agent.actor.hidden_dim": st.integers(4, 32),
    "agent.critic.num_layers": st.integers(1, 3),
    "agent.optimizers.critic.lr": st.floats(1e-5, 1e-2),
    "agent.multitask.should_use_disentangled_alpha": st.booleans(),
    "agent.temperature_loss": st.sampled_from(["log_alpha", "alpha"]),
    "env.use_one_hot": st.booleans(),
    "env.fixed_goal": st.booleans(),
    "env.max_episode_steps": st.integers(10, 50),
    "experiment.num_updates_per_step": st.integers(1, 2),
    "replay_buffer.batch_size": st.integers(1, 16),
}
valid_overrides = st.dictionaries(st.sampled_from(sorted(VALID)), st.none(), max_size=5).flatmap(
    lambda keys: st.fixed_dictionaries({key: VALID[key] for key in keys}))


def overrides_as_flags(overrides):
    return [f"--config.{key}={value if isinstance(value, str) else repr(value)}" for key, value in overrides.items()]


@SETTINGS
@given(valid_overrides)
def test_random_valid_overrides_are_accepted_as_given(overrides):
    config, message = command_line(*overrides_as_flags(overrides))
    assert message is None
    for key, value in overrides.items():
        got = flatten(config.to_dict())[key]
        assert got == value or (isinstance(value, float) and math.isclose(got, value))


SHORT = ["--config.experiment.num_train_steps=40", "--config.experiment.init_steps=20",
         "--config.experiment.eval_freq=40", "--config.experiment.save_freq=40", "--config.experiment.log_freq=20"]


def run(script, *args, env=None):
    return subprocess.run([sys.executable, script, *map(str, args)], cwd=REPO, capture_output=True, text=True,
                          timeout=600, env={**os.environ, **(env or {})})


@settings(max_examples=1, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@pytest.mark.e2e
@given(valid_overrides)
def test_a_rejected_run_leaves_nothing_that_breaks_a_valid_random_smoke_run(tmp_path, overrides):
    workdir = tmp_path / "run"
    refused = run("train.py", SMOKE, f"--workdir={workdir}", "--config.replay_buffer.capacity=1000000000000")
    assert refused.returncode != 0 and "Traceback" not in refused.stderr
    assert "out of memory" in refused.stderr and "replay_buffer.capacity" in refused.stderr
    assert not (workdir / "config.json").exists()
    refused = run("train.py", SMOKE, f"--workdir={workdir}", "--config.agent.critic.hidden_dim=1000000000")
    assert refused.returncode != 0 and "Traceback" not in refused.stderr  # XLA would abort while compiling
    assert re.search(r"out of memory before starting: the train state .* needs [\d,.]+ GiB .* Fix: lower the "
                     r"network sizes \(agent.actor/critic hidden_dim", refused.stderr), refused.stderr[-3000:]
    assert not workdir.exists()
    trained = run("train.py", SMOKE, f"--workdir={workdir}", *SHORT,
                  *overrides_as_flags(overrides))
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert "Traceback" not in trained.stderr
    assert json.loads((workdir / "eval.jsonl").read_text().splitlines()[-1])["step"] == 40


@pytest.mark.parametrize(
    "args, message",
    [
        (["--config.agnt.discount=0.9"], 'unknown config key \'agnt\' in --config.agnt.discount. Did you mean "agent"'),
        (["--config..seed=1"], "'.seed' is not a config key"),
        (["--config.agent=5"], "--config.agent is a section"),
        (["--config.extensions=['x.py']"], "--config.extensions cannot be set on the command line"),
        (["--config.seed", "--workdir=x"], "it took the next argument, --workdir=x, as its value"),
        (["--config.agent.actor.log_std_min=nan"], "agent.actor.log_std_min=nan must be a finite number"),
        (["--config.agent.optimizers.actor.lr=inf"], "agent.optimizers.actor.lr=inf must be a finite number"),
        (["--config.env.name=metaworld-mt10"], "e.g. --config=configs/compose.py:setup=metaworld,agent=state_sac,env=<name>."),
    ],
)
def test_command_line_faults_name_the_key_and_the_fix(args, message):
    assert_refused(command_line(*args)[1], message)


@pytest.mark.parametrize(
    "config, message",
    [
        ("--config=README.md", "config file 'README.md' is not a Python config file (line"),
        ("--config=configs/compose.py:env=metaworld-mt10,task=reach-v3", "task=reach-v3 names the task of a single-task env"),
    ],
)
def test_config_file_faults_name_the_file_and_the_fix(config, message):
    assert_refused(command_line(config=config)[1], message)


def test_a_config_file_that_raises_or_lacks_get_config_is_named(tmp_path):
    (tmp_path / "raises.py").write_text("raise RuntimeError('boom')\n")
    (tmp_path / "empty.py").write_text("x = 1\n")
    assert_refused(command_line(config=f"--config={tmp_path / 'raises.py'}")[1], "raised RuntimeError: boom")
    assert_refused(command_line(config=f"--config={tmp_path / 'empty.py'}")[1], "defines no get_config(arg=None)")


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda c: c.pop("setup"), "it lacks setup"),
        (lambda c: c["experiment"].pop("log_freq"), "The experiment section lacks log_freq"),
        (lambda c: c["replay_buffer"].update(size=3), "holds unknown keys size"),
        (lambda c: c.update(seed="one"), "seed='one' is a string, and seed takes an integer"),
        (lambda c: c["env"].update(max_episode_steps="50"), "env.max_episode_steps='50' is a string"),
        (lambda c: c["agent"].update(network=3), "agent.network must be a section of keys"),
        (lambda c: c["experiment"].update(save_video=1), "experiment.save_video=1 is an integer, and experiment.save_video takes True or False"),
    ],
)
def test_a_damaged_config_json_is_refused_as_a_config(tmp_path, edit, message):
    saved = json.loads(json.dumps(CONFIG.to_dict()))
    edit(saved)
    path = tmp_path / "config.json"
    path.write_text(json.dumps(saved))
    assert_refused(command_line(config=f"--config={train.FROM_JSON}:{path}")[1], message)
    with pytest.raises(policy_module.PolicyError, match="is not a valid run config"):
        policy_module.load_config(tmp_path)


@pytest.mark.parametrize("text, message", [("{\"seed\": 1", "is damaged or not a run's config"),
                                           ("[]", "it holds a JSON list"), ("", "is damaged")])
def test_a_corrupt_config_json_names_the_file_and_the_fix(tmp_path, text, message):
    (tmp_path / "config.json").write_text(text)
    with pytest.raises(policy_module.PolicyError, match=message) as error:
        policy_module.load_config(tmp_path)
    assert "Fix:" in str(error.value)


def test_resuming_with_damaged_log_lines_sets_them_aside(tmp_path):
    (tmp_path / "train.jsonl").write_text('{"step": 10}\ngarbage\n{"step": 20}\n{"step": 30}\n{"step": 4')
    warnings = keep_records_up_to(tmp_path, 20)
    assert (tmp_path / "train.jsonl").read_text() == '{"step": 10}\n{"step": 20}\n'
    assert (tmp_path / "train.jsonl.damaged").read_text() == 'garbage\n{"step": 4\n'
    assert warnings == [f"warning: {tmp_path / 'train.jsonl'}: line(s) 2, 5 are not JSON records (cut short or "
                        f"damaged); moved them to {tmp_path / 'train.jsonl.damaged'}."]


@pytest.fixture()
def run_copy(smoke_run, tmp_path):
    workdir = tmp_path / "run"
    shutil.copytree(smoke_run[0], workdir, ignore=shutil.ignore_patterns("videos"))
    return workdir


@pytest.mark.e2e
def test_a_damaged_newest_checkpoint_gives_one_warning_and_the_one_before(run_copy):
    for path in (run_copy / "checkpoints" / "240" / "arrays").rglob("*"):
        if path.is_file() and path.parent.name == "d":
            path.write_bytes(path.read_bytes()[:10])  # truncated array data
    result = run("evaluate.py", f"--workdir={run_copy}", "--episodes=1")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"warning: checkpoint 240 of {run_copy} cannot be read (")
    assert lines[0].endswith("skipped it, using checkpoint 200 instead.")
    assert "checkpoint 200, 1 episode(s) per task" in result.stdout
    with pytest.raises(CheckpointError, match=r"checkpoint 240 of .* cannot be read .*Fix: pass another --step"):
        mtsac_jax.load_policy(run_copy, step=240)


@pytest.mark.e2e
def test_an_emptied_newest_checkpoint_falls_back_and_every_damaged_one_stops(run_copy):
    shutil.rmtree(run_copy / "checkpoints" / "240" / "arrays")
    warnings = []
    assert mtsac_jax.load_policy(run_copy, warn=warnings.append).step == 200
    assert len(warnings) == 1 and "checkpoint 240" in warnings[0]
    shutil.rmtree(run_copy / "checkpoints" / "200" / "arrays")
    with pytest.raises(CheckpointError, match=r"no checkpoint of .* can be read \(200, 240;.*Fix: train again"):
        mtsac_jax.load_policy(run_copy, warn=warnings.append)


@pytest.mark.e2e
def test_a_deleted_checkpoints_folder_is_named_and_not_recreated(run_copy):
    shutil.rmtree(run_copy / "checkpoints")
    with pytest.raises(CheckpointError, match="checkpoints is missing"):
        mtsac_jax.load_policy(run_copy)
    assert not (run_copy / "checkpoints").exists()


@pytest.mark.parametrize("args, message", [
    (["--episodes=0"], "--episodes=0: evaluate at least one episode per task"),
    (["--step=7"], "has no checkpoint for step 7; it has [200, 240]. Fix:"),
    (["--episodes=1", "--video"], "cannot write the videos to"),
])
@pytest.mark.e2e
def test_evaluate_refuses_bad_input_in_one_message(run_copy, args, message):
    (run_copy / "videos").write_text("a file where the video folder goes")
    result = run("evaluate.py", f"--workdir={run_copy}", *args, env={"MUJOCO_GL": "egl"})
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert [line for line in result.stderr.splitlines() if line.strip()] == [result.stderr.strip()]
    assert message in result.stderr


@pytest.mark.parametrize("workdir", [pathlib.Path("/nonexistent/run"), REPO / "configs"])
def test_evaluate_on_a_missing_or_foreign_workdir_says_what_it_needs(workdir):
    with pytest.raises(policy_module.PolicyError, match="Fix: pass --workdir|is not a training workdir"):
        policy_module.load_config(workdir)
