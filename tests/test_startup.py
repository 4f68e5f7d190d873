"""Start-up: a run builds its train envs first and its eval envs at their first use."""

import numpy as np

from mtsac_jax import envs
from mtsac_jax.seed_run import SeedRun
from tests.conftest import tiny_config


class ObsPolicy:
    """A deterministic policy of the observation alone."""

    def eval_action(self, obs):
        return np.tanh(obs[:, :4])

    def reset(self, mask):
        pass


def test_eval_envs_are_built_at_their_first_use_and_evaluate_as_if_built_at_the_start(tmp_path):
    config = tiny_config()
    at_start = envs.make_vector_env(config.env, config.seed, evaluation=True)
    run = SeedRun(config, tmp_path, None)
    try:
        assert run.eval_envs == {}
        run.train_envs.reset()
        for _ in range(60):
            run.train_envs.step(np.full((1, 4), 0.5))
        late = run.eval_env("eval", 60)
        assert run.eval_envs == {"eval": late}
        assert run.setup.evaluate(ObsPolicy(), late, 2, run.names) == run.setup.evaluate(ObsPolicy(), at_start, 2,
                                                                                       run.names)
    finally:
        run.close()
        at_start.close()
