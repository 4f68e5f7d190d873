import importlib.util
import json
import subprocess
import sys

import pytest

from mtsac_jax.config import ConfigError, compose, validate
from tests.conftest import tiny_config

REPO = __import__("pathlib").Path(__file__).resolve().parents[1]


def run_train(*args, cwd=REPO):
    return subprocess.run([sys.executable, "train.py", *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def test_reference_configs_compose_and_validate():
    for env, tasks in (("metaworld-mt1", 1), ("metaworld-mt10", 10), ("metaworld-mt50", 50)):
        config = compose("metaworld", "state_sac", env)
        validate(config)
        assert config.agent.multitask.num_envs == tasks
    mt10 = compose("metaworld", "state_sac", "metaworld-mt10")
    assert (mt10.agent.actor.hidden_dim, mt10.agent.actor.num_layers) == (400, 3)
    assert (mt10.agent.critic.hidden_dim, mt10.agent.critic.num_layers) == (400, 3)
    assert mt10.replay_buffer.batch_size == 1280 and mt10.env.use_one_hot
    assert compose("metaworld", "state_sac", "metaworld-mt1").replay_buffer.batch_size == 128
    assert (mt10.agent.discount, mt10.agent.critic_tau, mt10.agent.init_temperature) == (0.99, 0.005, 1.0)
    assert mt10.agent.optimizers.actor.lr == mt10.agent.optimizers.critic.lr == 3e-4


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("agent.multitask.num_envs", 5, "agent.multitask.num_envs=5 but env.name='metaworld-mt10' has 10 task(s)"),
        ("replay_buffer.batch_size", 1001, "replay_buffer.batch_size=1001 is not divisible by the 10 tasks"),
        ("replay_buffer.capacity", 999, "replay_buffer.capacity=999 is not divisible"),
        ("replay_buffer.batch_size", 0, "replay_buffer.batch_size=0 must be positive"),
        ("agent.critic.hidden_dim", -4, "agent.critic.hidden_dim=-4 must be positive"),
        ("experiment.eval_freq", 0, "experiment.eval_freq=0 must be positive"),
        ("experiment.init_steps", -1, "experiment.init_steps=-1 must be >= 0"),
        ("agent.discount", 1.5, "agent.discount=1.5 must lie in (0, 1]"),
        ("agent.discount", 0.0, "agent.discount=0.0 must lie in (0, 1]"),
        ("env.max_episode_steps", 501, "exceeds Meta-World's limit of 500"),
        ("env.vector_strategy", "threads", "Unknown env.vector_strategy 'threads'"),
        ("agent.temperature_loss", "log", "Valid choices: log_alpha, alpha"),
        ("env.name", "metaworld-mt100", "Did you mean 'metaworld-mt10'?"),
        ("agent.name", "sac_state", "Unknown agent.name 'sac_state'"),
        ("setup.name", "hipbmdp", "setup.name='hipbmdp' evaluates on the env families dmcontrol, not on env.name='metaworld-mt10'"),
        ("setup.name", "hipbdmp", "Unknown setup.name 'hipbdmp'. Did you mean 'hipbmdp'? Valid choices: metaworld, hipbmdp"),
    ],
)
def test_bad_values_name_the_key_and_the_fix(key, value, message):
    config = tiny_config("metaworld-mt10")
    section, _, field = key.rpartition(".")
    target = config
    for part in section.split("."):
        target = target[part]
    target[field] = value
    with pytest.raises(ConfigError) as error:
        validate(config)
    assert message in str(error.value)


def test_multi_head_and_disjoint_together_is_refused():
    config = tiny_config(should_use_multi_head_policy=True, should_use_disjoint_policy=True)
    with pytest.raises(ConfigError, match="set one of them to False"):
        validate(config)


def test_unknown_task_lists_valid_ones():
    with pytest.raises(ConfigError, match=r"Unknown task 'reachh-v3'. Did you mean 'reach-v3'\? Valid choices: .*push-v3"):
        compose("metaworld", "state_sac", "metaworld-mt1", task_name="reachh-v3")


@pytest.mark.parametrize(
    "args, message",
    [
        (["--config=configs/metaworld_mt10.py", "--config.sed=1"], "unknown config key 'sed' in --config.sed"),
        (["--config=configs/metaworld_mt10.py", "--config.agent.multitask.num_env=3"], 'Did you mean "num_envs"'),
        (["--config=configs/metaworld_mt1.py:reachh-v3"], "Unknown task 'reachh-v3'. Did you mean 'reach-v3'?"),
        (["--config=configs/compose.py:setup=metaworld,agent=sac,env=metaworld-mt10"], "Valid choices: state_sac"),
        (["--config=configs/compose.py:env=metaworld-mt10,color=red"], "does not understand color"),
        (["--config=nope.json"], "configs/from_json.py needs a run's config.json as its argument"),
        (["--config=configs/metaworld_mt10.py:smok"], "configs/metaworld_mt10.py does not understand smok in its argument"),
        (["--config=configs/demo.py:fast"], "configs/demo.py does not understand fast in its argument. It takes smoke"),
        (["--config=configs/metaworld_mt1.py:reach-v3,push-v3"], "trains one task, and its argument names 2"),
        (["--config=configs/nope.py"], "config file 'configs/nope.py' does not exist"),
        (["--config=configs/metaworld_mt10.py", "--config.agent.discount=abc"], "could not convert string to float"),
        (["--config=configs/metaworld_mt10.py", "--config.agent.multitask.num_envs=3"], "Fix: pass --config.agent.multitask.num_envs=10"),
        ([], "no --config given"),
        (["--config=configs/metaworld_mt10.py", "--config.agent.network.name=care"],
         "The network is chosen in the config file's argument"),
        (["--config=configs/metaworld_mt10.py", "--config.env.name=metaworld-mt50"],
         "The env is chosen in the config file's argument"),
        (["--config=configs/compose.py:env=metaworld-mt10,network=cnn"], "Unknown agent.network.name 'cnn'"),
        (["--config=configs/compose.py:env=metaworld-mt10,gradient=pcgradd"], "Did you mean 'pcgrad'?"),
    ],
)
@pytest.mark.e2e
def test_command_line_errors_are_one_clear_message(args, message, tmp_path):
    result = run_train(*args, f"--workdir={tmp_path / 'run'}")
    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists(), "nothing may start before the config is valid"


@pytest.mark.parametrize("path", sorted(set((REPO / "configs").glob("*.py")) - {REPO / "configs" / "from_json.py"}),
                         ids=lambda p: p.name)
def test_every_config_file_has_a_valid_smoke_variant(path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config("smoke")
    validate(config)
    assert config.experiment.num_train_steps == 240 and config.agent.critic.hidden_dim == 32
    with pytest.raises(AttributeError):  # locked: no new keys
        config.experiment.new_key = 1


def test_a_section_with_the_keys_of_another_choice_is_refused():
    from mtsac_jax.networks import NETWORKS, Network

    NETWORKS.register("two_widths", Network(make=lambda *args, **kwargs: None, default_config=lambda: {"width": 2}))
    assert "two_widths" in compose("metaworld", "state_sac", "metaworld-mt1", network="two_widths").agent.network.name
    config = tiny_config()
    config.agent.network.name = "two_widths"  # the mlp's section has no `width`
    with pytest.raises(ConfigError, match=r"holds the keys of another choice \(differing: width\).*network=two_widths"):
        validate(config)


@pytest.mark.e2e
def test_registering_a_taken_name_from_another_file_is_refused(tmp_path):
    other = tmp_path / "other.py"
    other.write_text("from mtsac_jax.networks import NETWORKS\nNETWORKS.register('mlp', None)\n")
    result = subprocess.run([sys.executable, str(other)], capture_output=True, text=True, timeout=120)
    assert "The network 'mlp' is already registered" in result.stderr and "give the new network another name" in result.stderr


def test_a_config_json_of_an_earlier_version_is_upgraded():
    from mtsac_jax.config import upgrade

    saved = tiny_config().to_dict()
    del saved["agent"]["network"], saved["agent"]["gradient"], saved["extensions"], saved["experiment"]["save_video"]
    upgraded = upgrade(saved)
    assert upgraded["experiment"]["save_video"] is False
    assert upgraded["agent"]["network"] == {"name": "mlp"} and upgraded["agent"]["gradient"] == {"name": "mean"}
    assert upgraded["extensions"] == [] and "network" not in saved["agent"]
    validate(__import__("ml_collections").ConfigDict(upgraded))


@pytest.mark.e2e
def test_a_runs_config_json_is_a_config(smoke_run):
    import json

    workdir, _ = smoke_run
    result = run_train(f"--config={workdir / 'config.json'}", "--config.seed=4", "--print_config")
    assert result.returncode == 0, result.stderr[-3000:]
    printed = json.loads(result.stdout)
    assert printed == {**json.loads((workdir / "config.json").read_text()), "seed": 4}


@pytest.mark.e2e
def test_help_lists_the_flags_and_every_config_key_with_its_value():
    result = run_train("--config=configs/metaworld_mt1.py:push-v3", "--help")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "--workdir" in result.stdout and "--print_config" in result.stdout
    assert "env.task_name = 'push-v3'" in result.stdout and "agent.critic.hidden_dim = 400" in result.stdout


def test_default_workdirs_name_the_variant_and_the_non_default_choices():
    from mtsac_jax.cli import config_variant, default_workdir

    assert config_variant(["train.py", "--config=configs/metaworld_mt1.py:push-v3,smoke"]) == "smoke"
    assert config_variant(["train.py", "--config=configs/demo.py"]) == "demo"
    assert config_variant(["train.py", "--config=configs/demo.py:smoke"]) == "demo-smoke"
    assert config_variant(["train.py", "--config=configs/metaworld_mt10.py"]) == ""
    mt10 = compose("metaworld", "state_sac", "metaworld-mt10")
    assert str(default_workdir(mt10)) == "runs/metaworld-mt10_state_sac_seed1"
    assert str(default_workdir(mt10, "smoke")) == "runs/metaworld-mt10_state_sac_seed1_smoke"


def test_commands_that_change_keys_get_folders_of_their_own_and_the_same_command_the_same(tmp_path, monkeypatch):
    """An override of any key (a resumable one such as num_train_steps, or the seed, aside) adds a
    short id of the overrides to the default folder; a folder without the id that holds this very
    run (one started before ids existed) is kept."""
    from mtsac_jax.cli import default_workdir, overridden_keys

    monkeypatch.chdir(tmp_path)
    argv = ["train.py", f"--config={REPO / 'configs' / 'metaworld_mt10.py'}:smoke"]
    smoke = compose("metaworld", "state_sac", "metaworld-mt10", smoke=True)
    changed = compose("metaworld", "state_sac", "metaworld-mt10", smoke=True)
    changed.unlock()
    changed.num_seeds, changed.experiment.num_train_steps, changed.seed = 2, 1000, 7
    assert overridden_keys(smoke, argv) == {}
    assert overridden_keys(changed, argv) == {"num_seeds": 2}
    plain = default_workdir(smoke, "smoke", {})
    first = default_workdir(changed, "smoke", {"num_seeds": 2})
    assert first.parent == plain.parent and first.name.startswith("metaworld-mt10_state_sac_seed7_smoke_")
    assert default_workdir(changed, "smoke", {"num_seeds": 2}) == first
    assert default_workdir(changed, "smoke", {"num_seeds": 3}) != first
    legacy = default_workdir(changed, "smoke", {})  # where this run went before ids
    legacy.mkdir(parents=True)
    (legacy / "config.json").write_text(json.dumps(changed.to_dict()))
    assert default_workdir(changed, "smoke", {"num_seeds": 2}) == legacy
