"""Reusing a trained agent: load_policy, Meta-World's evaluator, evaluate.py."""

import shutil
import subprocess
import sys

import gymnasium as gym
import metaworld  # noqa: F401  (registers the Meta-World envs)
import numpy as np
import pytest
from metaworld.evaluation import evaluation

import mtsac_jax
from mtsac_jax import envs
from mtsac_jax.setups import metaworld as our_evaluation
from mtsac_jax.policy import PolicyError, load_config
from mtsac_jax.run_log import format_eval
from tests.conftest import REPO, read_jsonl


@pytest.mark.e2e
def test_load_policy_plugs_into_metaworlds_evaluator(smoke_run):
    workdir, _ = smoke_run
    policy = mtsac_jax.load_policy(workdir)
    assert policy.step == 240
    envs = gym.make_vec(
        "Meta-World/MT1", env_name="reach-v3", vector_strategy="sync", seed=0,
        vector_kwargs={"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP},
    )
    try:
        mean_success, mean_return, success_per_task, returns = evaluation(policy, envs, num_episodes=2)
    finally:
        envs.close()
    assert set(success_per_task) == {"reach-v3"} and len(returns["reach-v3"]) == 2
    assert 0.0 <= mean_success <= 1.0 and mean_return > 0.0


@pytest.mark.e2e
def test_our_evaluator_agrees_with_metaworlds_episode_for_episode(smoke_run):
    """Our eval envs and evaluate() against Meta-World's own env stack and evaluator, built
    from the same seeds a run uses (goals from the per-task goal seed, then the env reseeded
    from the eval stream): same episode returns, same success."""
    workdir, _ = smoke_run
    config, policy = load_config(workdir), mtsac_jax.load_policy(workdir)
    goal_seed = envs.derived_seed(config.seed, 0)
    rng_seed = envs.derived_seed(config.seed, 0, envs.EVAL_STREAM)

    def metaworld_env():
        env = metaworld.make_mt_envs("reach-v3", seed=goal_seed, env_id=0, num_tasks=1, terminate_on_success=True,
                                     use_one_hot=False, max_episode_steps=config.env.max_episode_steps)
        env.unwrapped.seed(rng_seed)
        return env

    theirs = gym.vector.SyncVectorEnv([metaworld_env], autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
    ours, ours_again = (envs.make_vector_env(config.env, config.seed, evaluation=True) for _ in range(2))
    try:
        _, _, their_success, their_returns = evaluation(policy, theirs, num_episodes=3)
        _, _, _, returns_on_our_envs = evaluation(policy, ours, num_episodes=3)
        record = our_evaluation.evaluate(policy, ours_again, 3, ["reach-v3"])
    finally:
        for vector_env in (theirs, ours, ours_again):
            vector_env.close()
    assert returns_on_our_envs["reach-v3"] == their_returns["reach-v3"]  # episode for episode
    assert record["tasks"]["reach-v3"] == {
        "success": their_success["reach-v3"],
        "episode_reward": float(np.mean(their_returns["reach-v3"])),
    }


@pytest.mark.e2e
def test_policy_is_deterministic_numpy_and_matches_the_chosen_checkpoint(smoke_run):
    workdir, _ = smoke_run
    latest, earlier = mtsac_jax.load_policy(workdir), mtsac_jax.load_policy(workdir, step=200)
    obs = np.random.default_rng(0).normal(size=(1, 39))
    actions = latest.eval_action(obs)
    assert isinstance(actions, np.ndarray) and actions.shape == (1, 4) and np.all(np.abs(actions) <= 1)
    np.testing.assert_array_equal(actions, latest.eval_action(obs))
    assert not np.array_equal(actions, earlier.eval_action(obs))
    with pytest.raises(PolicyError, match=r"no checkpoint for step 7; it has \[200, 240\]"):
        mtsac_jax.load_policy(workdir, step=7)


@pytest.mark.e2e
def test_load_policy_restores_the_checkpoints_actor_and_leaves_the_buffer_unread(smoke_run):
    import jax
    import orbax.checkpoint as ocp

    from mtsac_jax.checkpoint import Checkpointer

    workdir, _ = smoke_run
    checkpointer = Checkpointer(workdir, keep=2)
    try:
        metadata = checkpointer.array_metadata(240)
        part = checkpointer.restore_part(240, {"train_state": {"actor": {"params": metadata["train_state"]["actor"]["params"]}}})
    finally:
        checkpointer.close()
    assert metadata["buffer"]["action"].shape[2] == 4 and metadata["obs"].shape == (1, 39)
    assert list(part) == ["train_state"] and list(part["train_state"]) == ["actor"] and list(part["train_state"]["actor"]) == ["params"]
    manager = ocp.CheckpointManager(checkpointer.directory, item_names=("arrays",))
    full = manager.restore(240, args=ocp.args.Composite(arrays=ocp.args.StandardRestore()))["arrays"]
    manager.close()
    wanted, whole = part["train_state"]["actor"]["params"], full["train_state"]["actor"]["params"]
    assert jax.tree.structure(wanted) == jax.tree.structure(whole)
    for ours, theirs in zip(jax.tree.leaves(wanted), jax.tree.leaves(whole)):
        np.testing.assert_array_equal(ours, theirs)


def test_load_policy_on_a_folder_without_a_run(tmp_path):
    with pytest.raises(PolicyError, match="not a training workdir"):
        mtsac_jax.load_policy(tmp_path)


@pytest.mark.e2e
def test_evaluate_script_prints_per_task_success_and_records_video(smoke_run):
    workdir, _ = smoke_run
    result = subprocess.run(
        [sys.executable, "evaluate.py", f"--workdir={workdir}", "--episodes=1", "--video"],
        cwd=REPO, capture_output=True, text=True, timeout=300, env={**__import__("os").environ, "MUJOCO_GL": "egl"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "checkpoint 240, 1 episode(s) per task" in result.stdout
    assert "reach-v3  success" in result.stdout
    videos = list((workdir / "videos" / "step240").glob("*.mp4"))
    assert [v.name for v in videos] == ["reach-v3_ep0.mp4"] and videos[0].stat().st_size > 1000


@pytest.mark.e2e
def test_evaluate_script_without_checkpoints_says_so(tmp_path):
    result = subprocess.run([sys.executable, "evaluate.py", f"--workdir={tmp_path}"], cwd=REPO,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode != 0 and "not a training workdir" in result.stderr
    assert "Traceback" not in result.stderr


def evaluate(workdir, *args):
    """evaluate.py as a user types it: its first line, and the figures it prints."""
    result = subprocess.run([sys.executable, "evaluate.py", f"--workdir={workdir}", *args], cwd=REPO,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr[-3000:]
    first, _, figures = result.stdout.partition("\n")
    return first, figures.strip("\n")


@pytest.mark.e2e
def test_evaluate_script_gives_the_figures_of_the_runs_own_evaluation_at_that_step(smoke_run):
    """The newest checkpoint (240) is of the run's second evaluation: evaluate.py starts the eval
    envs as that evaluation found them and prints eval.jsonl's figures; --fresh_envs evaluates
    on new ones (the goals of the first evaluation), and so does a checkpoint without an
    evaluation; another episode count says it cannot give eval.jsonl's figures."""
    workdir, _ = smoke_run
    logged = format_eval(read_jsonl(workdir / "eval.jsonl")[-1])
    assert logged.startswith("eval step 240: ")
    first, figures = evaluate(workdir)
    assert first == (f"{workdir}, checkpoint 240, 1 episode(s) per task on the run's eval envs as its evaluation at "
                     "this step found them: the figures of eval.jsonl")
    assert figures == logged
    first, figures = evaluate(workdir, "--fresh_envs")
    assert first.endswith("1 episode(s) per task on freshly built eval envs (--fresh_envs: not the figures of eval.jsonl)")
    assert figures.startswith("eval step 240: ") and figures != logged  # other goals
    first, _ = evaluate(workdir, "--step=200")
    assert first.endswith("on freshly built eval envs (the run did not evaluate at step 200: not the figures of "
                          "eval.jsonl)")
    first, _ = evaluate(workdir, "--episodes=2")
    assert first.endswith("2 episode(s) per task on the run's eval envs as its evaluation at this step found them, "
                          "which ran 1 episode(s) per task: with 2 the figures cannot be those of eval.jsonl")


@pytest.mark.e2e
def test_evaluate_script_on_a_checkpoint_without_its_evaluations_envs_says_they_are_fresh(tmp_path):
    workdir = tmp_path / "run"
    shutil.copytree(REPO / "tests" / "fixtures" / "legacy" / "mt1", workdir)
    first, figures = evaluate(workdir)
    assert first == (f"{workdir}, checkpoint 200, 1 episode(s) per task on freshly built eval envs (checkpoint 200 is "
                     "older than those that keep their evaluation's eval envs: not the figures of eval.jsonl)")
    assert figures.startswith("eval step 200: ") and "reach-v3  success" in figures
