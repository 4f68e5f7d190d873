"""mtrl's command lines (Hydra-style `key=value` words) run as typed, through train.py and main.py."""

import json
import subprocess
import sys

import pytest

from tests.conftest import REPO

# mtrl's documented MT10 multi-head line, shrunk to smoke size with mtrl's own keys.
MTRL_MT10 = [
    "setup=metaworld", "agent=state_sac", "env=metaworld-mt10", "agent.multitask.num_envs=10",
    "agent.multitask.should_use_disentangled_alpha=True", "agent.multitask.should_use_multi_head_policy=True",
    "agent.encoder.type_to_select=identity", "agent.multitask.actor_cfg.should_condition_encoder_on_task_info=False",
    "experiment.save.model.retain_last_n=1", "setup.seed=3", "replay_buffer.batch_size=80",
    "replay_buffer.capacity=10000", "experiment.num_train_steps=120", "experiment.init_steps=60",
    "experiment.eval_freq=120", "experiment.num_eval_episodes=1", "experiment.log_freq=60",
    "agent.actor.hidden_dim=32", "agent.critic.hidden_dim=32", "env.max_episode_steps=50",
]
NATIVE_MT10 = [
    "--config=configs/compose.py:setup=metaworld,agent=state_sac,env=metaworld-mt10", "--config.seed=3",
    "--config.agent.multitask.should_use_multi_head_policy=True", "--config.env.use_one_hot=False",
    "--config.experiment.keep_checkpoints=1", "--config.replay_buffer.batch_size=80",
    "--config.replay_buffer.capacity=10000", "--config.experiment.num_train_steps=120",
    "--config.experiment.init_steps=60", "--config.experiment.eval_freq=120",
    "--config.experiment.num_eval_episodes=1", "--config.experiment.log_freq=60", "--config.agent.actor.hidden_dim=32",
    "--config.agent.critic.hidden_dim=32", "--config.env.max_episode_steps=50",
]


def run(script, *args):
    return subprocess.run([sys.executable, script, *args], cwd=REPO, capture_output=True, text=True, timeout=600)


def printed_configs(result):
    assert result.returncode == 0, result.stderr[-3000:]
    decoder, text, configs = json.JSONDecoder(), result.stdout, []
    while "{" in text:
        config, end = decoder.raw_decode(text[text.index("{"):])
        configs.append(config)
        text = text[text.index("{") + end:]
    return configs


@pytest.mark.e2e
def test_mtrls_mt10_line_trains_through_main_py_with_the_native_forms_config(tmp_path):
    (native,) = printed_configs(run("train.py", *NATIVE_MT10, "--print_config"))
    (hydra_style,) = printed_configs(run("train.py", *MTRL_MT10, "--cfg", "job"))
    assert hydra_style == native
    result = run("main.py", *MTRL_MT10, f"--workdir={tmp_path / 'run'}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Training state_sac (network mlp, gradient mean) on metaworld-mt10" in result.stdout
    assert json.loads((tmp_path / "run" / "config.json").read_text()) == native


@pytest.mark.e2e
def test_a_multirun_seed_sweep_runs_each_seed():
    result = run("main.py", "-m", "setup=metaworld", "agent=state_sac", "env=metaworld-mt1", "setup.seed=1,2,3",
                 "--print_config")
    assert [config["seed"] for config in printed_configs(result)] == [1, 2, 3]
    assert "multirun 3/3: setup=metaworld agent=state_sac env=metaworld-mt1 setup.seed=3" in result.stdout


@pytest.mark.e2e
def test_mtrls_care_line_chooses_the_care_network():
    (config,) = printed_configs(run(
        "main.py", "setup=metaworld", "agent=state_sac", "env=metaworld-mt10", "agent.multitask.num_envs=10",
        "agent.multitask.should_use_disentangled_alpha=True", "agent.multitask.should_use_task_encoder=True",
        "agent.encoder.type_to_select=moe", "agent.multitask.should_use_multi_head_policy=False",
        "agent.encoder.moe.task_id_to_encoder_id_cfg.mode=attention", "agent.encoder.moe.num_experts=6",
        "agent.multitask.actor_cfg.should_condition_model_on_task_info=False",
        "agent.multitask.actor_cfg.should_condition_encoder_on_task_info=True",
        "agent.multitask.actor_cfg.should_concatenate_task_info_with_encoder=True",
        "agent.multitask.task_encoder_cfg.model_cfg.pretrained_embedding_cfg.should_use=True", "--print_config"))
    assert config["agent"]["network"]["name"] == "care" and config["agent"]["network"]["num_experts"] == 6
    assert config["agent"]["multitask"]["task_encoder"]["description_embeddings"] == "metaworld"
    assert config["env"]["use_one_hot"] is False


@pytest.mark.e2e
def test_words_override_a_config_file():
    (config,) = printed_configs(run("train.py", "--config=configs/metaworld_mt1.py:push-v3", "setup.seed=7",
                                    "agent.multitask.should_use_task_encoder=True", "experiment.num_train_steps=1e6",
                                    "agent.optimizers.actor.lr=1e-3", "--print_config"))
    assert config["seed"] == 7 and config["env"]["task_name"] == "push-v3"
    assert config["experiment"]["num_train_steps"] == 1_000_000 and config["agent"]["optimizers"]["actor"]["lr"] == 1e-3
    assert config["agent"]["multitask"]["should_use_task_encoder"] is True


@pytest.mark.parametrize(
    "args, message",
    [
        (["env=metaworld-mt10", "agent.encoder.type_to_select=rnn"], "agent.encoder.type_to_select=rnn has no equivalent"),
        (["env=metaworld-mt10", "experiment.eval_only=True"], "mtrl's key 'experiment.eval_only' has no equivalent here"),
        (["--config=configs/metaworld_mt10.py", "env=metaworld-mt50"], "both choose the composition"),
        (["env=metaworld-mt10", "setup.seed=1,2"], "several values run as a sweep with -m"),
        (["env=metaworld-mt10", "agent.multitask.actor_cfg.should_condition_encoder_on_task_info=True",
          "agent.multitask.critic_cfg.should_condition_encoder_on_task_info=False"], "task-info flags disagree"),
        (["env=metaworld-mt100"], "Unknown env 'metaworld-mt100'"),
        (["env=metaworld-mt10", "setup.seed=2", "--config.seed=3"], "seed given twice"),
        (["agent=distral", "env=metaworld-mt10", "agent.distral_alpha=0.1"], "mtrl's distral_alpha is the KL's coefficient"),
        (["--config=configs/metaworld_mt10.py", "smoke"], "Fix: give the file `smoke` in its argument"),
        (["env=metaworld-mt10", "hydra.run.dir=/tmp/a", "--workdir=/tmp/b"], "both name the run's folder"),
        (["env=metaworld-mt10", "experiment.num_train_step=10"], "Did you mean experiment.num_train_steps?"),
        (["-m", "env=metaworld-mt10", "setup.seed=1,2", "setup.save_dir=/tmp/a"],
         "would put 2 runs of this sweep into one folder"),
    ],
)
def test_words_that_cannot_run_stop_with_one_message(args, message):
    """In this process: the words are refused before any flag is parsed."""
    with pytest.raises(SystemExit) as stop:
        train_script().run(["train.py", *args, "--print_config"])
    assert message in str(stop.value.code) and str(stop.value.code).startswith("error: ")


@pytest.mark.e2e
def test_the_word_smoke_shrinks_mtrls_line_as_compose_smoke_does():
    (config,) = printed_configs(run("main.py", "setup=metaworld", "agent=state_sac", "env=metaworld-mt10", "smoke",
                                    "--print_config"))
    (composed,) = printed_configs(run("train.py", "--config=configs/compose.py:env=metaworld-mt10,smoke",
                                      "--print_config"))
    assert config == composed and config["experiment"]["num_train_steps"] == 240
    swept = printed_configs(run("main.py", "-m", "env=metaworld-mt10", "setup.seed=1,2", "smoke", "--print_config"))
    assert [(c["seed"], c["experiment"]["num_train_steps"]) for c in swept] == [(1, 240), (2, 240)]


@pytest.mark.e2e
def test_mtrls_distral_line_chooses_the_distral_agent():
    (config,) = printed_configs(run("main.py", "setup=metaworld", "agent=distral", "env=metaworld-mt10",
                                    "agent.multitask.num_envs=10", "--print_config"))
    assert config["agent"]["name"] == "distral" and config["agent"]["eval_policy"] == "distilled"


def train_script():
    """train.py as a module, imported once per process (its flags are defined at import)."""
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    import train

    return train


@pytest.mark.e2e
def test_mtrls_protocol_is_one_word_on_the_command_line_and_in_a_config_files_argument():
    mtrl = {"fixed_goal": True, "max_episode_steps": 150, "use_one_hot": False}
    for args in (["main.py", "setup=metaworld", "agent=state_sac", "env=metaworld-mt10", "protocol=mtrl"],
                 ["train.py", "--config=configs/metaworld_mt10.py:mtrl"],
                 ["train.py", "--config=configs/care.py:mt10,mtrl"]):
        (config,) = printed_configs(run(*args, "--print_config"))
        assert {key: config["env"][key] for key in mtrl} == mtrl, args
    (default,) = printed_configs(run("train.py", "--config=configs/metaworld_mt10.py", "--print_config"))
    assert default["env"]["max_episode_steps"] == 500 and default["env"]["fixed_goal"] is False


def test_help_with_mtrls_words_lists_the_keys_of_the_config_they_compose(capsys):
    train_script().run(["train.py", "setup=hipbmdp", "agent=hipbmdp", "env=dmcontrol-cheetah-run-distribution-v0",
                        "--help"])
    out = capsys.readouterr().out
    assert "configs/compose.py:setup=hipbmdp,agent=hipbmdp,env=dmcontrol-cheetah-run-distribution-v0" in out
    assert "agent.task_embedding.metric_weight = 0.01" in out and "env.train_ids = (3, 4, 7, 8)" in out
