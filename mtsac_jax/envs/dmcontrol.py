"""`dmcontrol`: distributions of dm_control suite tasks whose physics differ (the
HiP-BMDP setting, Zhang et al. 2021), ten env ids each, trained on some ids and evaluated on
those and on two sets of unseen ids.

| env name | task | what varies over ids 1..10 |
|---|---|---|
| `dmcontrol-finger-spin-distribution-v0` | finger spin | mtenv's "size": the x-radius of the finger's default site, 0.025..0.25 |
| `dmcontrol-finger-spin-spinner-distribution-v0` | finger spin | the spinner's capsule half-length, 0.04..0.13 (id 6: the suite's 0.09) |
| `dmcontrol-cheetah-run-distribution-v0` | cheetah run | the torso capsule's half-length, 0.5..1.4 |
| `dmcontrol-walker-walk-friction-distribution-v0` | walker walk | the default geom sliding friction, 0.7..1.6 |
| `dmcontrol-walker-walk-foot-distribution-v0` | walker walk | the `left_foot` capsule's half-length, 0.08..0.17 |

The first, third, fourth and fifth are mtenv's HiP-BMDP families with its values, so mtrl's runs
can be reproduced. mtenv's finger "size" edits the finger's default `site`, which only the
`touchtop`/`touchbottom` sites use: they are invisible (group 3) and back the touch sensors, so
the dynamics, the rewards and the frames of every id are the same; only the touch readings of
the state observation may differ. The spinner distribution varies real geometry (the spinner's
length and so its inertia and where the finger meets it) for a finger family whose dynamics change.

Each env is built from the suite's model XML edited in memory (`Physics.from_xml_string`) and the
suite's own task class; nothing is written to disk. As mtrl (dmc2gym): the state observation is
the suite's observation dict flattened in its order; an action is repeated `action_repeat` times
(rewards summed); an episode is `episode_length` control steps (1000: 500 agent steps at action
repeat 2), and it ends by truncation, never termination. The env ids a run trains on and those it
is evaluated on besides are `env.train_ids`, `env.interpolation_ids`, `env.extrapolation_ids`
(mtrl's finger split [3, 4, 7, 8] / [5, 6] / [2, 9] by default).

With `env.from_pixels=True` an observation is instead the last `frame_stack` frames rendered
offscreen after each agent step (`height` x `width`, camera `camera_id`), channels first, as
uint8: (3 * frame_stack, height, width), (9, 84, 84) at mtrl's settings. The replay buffer keeps
them as uint8; the pixel encoder scales them inside the update.

Run it:

    python train.py --config=configs/hipbmdp.py:cheetah-run
    python train.py --config=configs/hipbmdp.py:finger-spin-spinner,state_sac
    python train.py --config=configs/compose.py:setup=hipbmdp,env=dmcontrol-walker-walk-foot-distribution-v0
"""

from __future__ import annotations

import ctypes.util
import dataclasses
import functools
import os
import warnings
import xml.etree.ElementTree as ElementTree
from typing import Callable

import gymnasium as gym
import ml_collections
import numpy as np


def _choose_gl_backend() -> None:
    """dm_control fixes its OpenGL backend when first imported, trying GLFW first, which cannot
    render without a display: on a machine without one, and without `MUJOCO_GL` set, choose EGL or
    OSMesa, whichever library is installed, before dm_control is imported (videos render then)."""
    if "MUJOCO_GL" in os.environ or os.environ.get("DISPLAY"):
        return
    for backend, library in (("egl", "EGL"), ("osmesa", "OSMesa")):
        if ctypes.util.find_library(library):
            os.environ["MUJOCO_GL"] = backend
            return


_choose_gl_backend()
# without a display and without EGL or OSMesa, dm_control's GLFW probe warns; only rendering needs it
warnings.filterwarnings("ignore", message=".*DISPLAY environment variable is missing")
from dm_control.rl import control  # noqa: E402

from mtsac_jax.envs import EnvFamily, TaskEnv, rendering_failed
from mtsac_jax.registry import ConfigError

NUM_IDS = 10
UNSEEN_SETS = ("interpolation", "extrapolation")


def _set_size(name: str, index: int) -> Callable:
    """An edit setting entry `index` of the `size` of the geom named `name`."""

    def edit(root: ElementTree.Element, value: float) -> None:
        element = next(e for e in root.iter("geom") if e.get("name") == name)
        size = element.get("size").split()
        size[index] = f"{value:g}"
        element.set("size", " ".join(size))

    return edit


def _finger_site_radius(root: ElementTree.Element, value: float) -> None:
    site = next(d for d in root.iter("default") if d.get("class") == "finger").find("site")
    size = site.get("size").split()
    site.set("size", " ".join([f"{value:g}", *size[1:]]))


def _spinner_length(root: ElementTree.Element, value: float) -> None:
    for name in ("cap1", "cap2"):
        _set_size(name, 1)(root, value)


def _torso_length(root: ElementTree.Element, value: float) -> None:
    torso = next(e for e in root.iter("geom") if e.get("name") == "torso")
    torso.set("fromto", f"{-value:g} 0 0 {value:g} 0 0")


def _sliding_friction(root: ElementTree.Element, value: float) -> None:
    geom = root.find("default").find("geom")
    friction = geom.get("friction").split()
    geom.set("friction", " ".join([f"{value:g}", *friction[1:]]))


@dataclasses.dataclass(frozen=True)
class Distribution:
    """One distribution: the suite domain and its task, the control timestep the suite gives
    that task, and the value of the varied quantity for ids 1..10."""

    domain: str
    make_task: Callable[[np.random.RandomState], object]
    control_timestep: float | None  # None: the physics timestep (the suite's default)
    prefix: str  # env ids are named `<prefix>_<id>` (mtenv's names)
    values: tuple[float, ...]
    edit: Callable[[ElementTree.Element, float], None]
    varies: str


def _linear(first: float, step: float) -> tuple[float, ...]:
    return tuple(round(first + step * index, 6) for index in range(NUM_IDS))


@functools.cache
def _distributions() -> dict[str, Distribution]:
    from dm_control.suite import cheetah, finger, walker

    spin = lambda random: finger.Spin(random=random)  # noqa: E731
    walk = lambda random: walker.PlanarWalker(move_speed=1.0, random=random)  # noqa: E731 (the suite's walk speed)
    return {
        "dmcontrol-finger-spin-distribution-v0": Distribution(
            "finger", spin, 0.02, "size", _linear(0.025, 0.025), _finger_site_radius,
            "the x-radius of the finger's default site (the touch sensors' zone; dynamics unchanged)"),
        "dmcontrol-finger-spin-spinner-distribution-v0": Distribution(
            "finger", spin, 0.02, "spinner_length", _linear(0.04, 0.01), _spinner_length,
            "the spinner's capsule half-length"),
        "dmcontrol-cheetah-run-distribution-v0": Distribution(
            "cheetah", lambda random: cheetah.Cheetah(random=random), None, "torso_length", _linear(0.5, 0.1),
            _torso_length, "the torso capsule's half-length"),
        "dmcontrol-walker-walk-friction-distribution-v0": Distribution(
            "walker", walk, 0.025, "friction", _linear(0.7, 0.1), _sliding_friction,
            "the default geom sliding friction"),
        "dmcontrol-walker-walk-foot-distribution-v0": Distribution(
            "walker", walk, 0.025, "foot_length", _linear(0.08, 0.01), _set_size("left_foot", 1),
            "the left foot capsule's half-length"),
    }


ENV_NAMES = (
    "dmcontrol-finger-spin-distribution-v0",
    "dmcontrol-finger-spin-spinner-distribution-v0",
    "dmcontrol-cheetah-run-distribution-v0",
    "dmcontrol-walker-walk-friction-distribution-v0",
    "dmcontrol-walker-walk-foot-distribution-v0",
)


def default_config(name: str, task_name: str | None = None) -> dict:
    """mtrl's finger split of the ten ids, its action repeat and episode length, state observations."""
    return {
        "train_ids": (3, 4, 7, 8),
        "interpolation_ids": (5, 6),
        "extrapolation_ids": (2, 9),
        "action_repeat": 2,
        "episode_length": 1000,  # control steps; episode_length / action_repeat agent steps
        "from_pixels": False,
        "height": 84,
        "width": 84,
        "camera_id": 0,
        "frame_stack": 3,
    }


def _names(env_config, ids) -> tuple[str, ...]:
    prefix = _distributions()[env_config.name].prefix
    return tuple(f"{prefix}_{env_id}" for env_id in ids)


def task_names(env_config: ml_collections.ConfigDict) -> tuple[str, ...]:
    """The training env ids' names, `<prefix>_<id>`, in the order of `env.train_ids`."""
    return _names(env_config, env_config.train_ids)


def unseen_task_sets(env_config: ml_collections.ConfigDict) -> dict[str, tuple[str, ...]]:
    """The unseen env ids a run is evaluated on besides its training ids, by set."""
    return {name: _names(env_config, env_config[f"{name}_ids"]) for name in UNSEEN_SETS}


def validate(env_config: ml_collections.ConfigDict) -> None:
    sets = {"train_ids": env_config.train_ids, **{f"{name}_ids": env_config[f"{name}_ids"] for name in UNSEEN_SETS}}
    for key, ids in sets.items():
        ids = list(ids)
        if not all(isinstance(env_id, int) and 1 <= env_id <= NUM_IDS for env_id in ids) or len(set(ids)) != len(ids):
            raise ConfigError(
                f"env.{key}={ids}: env ids are distinct integers from 1 to {NUM_IDS}. Fix: e.g. "
                f"--config.env.{key}='{default_config(env_config.name)[key]}'."
            )
    if not env_config.train_ids:
        raise ConfigError("env.train_ids is empty: a run trains on at least one env id. Fix: e.g. "
                          "--config.env.train_ids='(3, 4, 7, 8)'.")
    keys = list(sets)
    for first, key in enumerate(keys):
        for other in keys[first + 1:]:
            shared = sorted(set(sets[key]) & set(sets[other]))
            if shared:
                raise ConfigError(
                    f"env.{key} and env.{other} share the env id(s) {shared}: an env id the agent trains on is not "
                    "unseen, and each unseen set is reported on its own. Fix: give each set its own ids."
                )
    for key in ("action_repeat", "episode_length", "height", "width", "frame_stack"):
        if not (isinstance(env_config[key], int) and env_config[key] > 0):
            raise ConfigError(f"env.{key}={env_config[key]!r} must be a positive integer.")
    if env_config.episode_length % env_config.action_repeat:
        raise ConfigError(
            f"env.episode_length={env_config.episode_length} control steps is not a multiple of "
            f"env.action_repeat={env_config.action_repeat}. Fix: make it one, e.g. 1000 with action repeat 2."
        )


def describe(env_config: ml_collections.ConfigDict) -> str:
    distribution = _distributions()[env_config.name]
    values = dict(zip(range(1, NUM_IDS + 1), distribution.values))
    shown = lambda ids: ", ".join(f"{env_id} ({values[env_id]:g})" for env_id in ids)  # noqa: E731
    return (
        f"{distribution.domain} with {distribution.varies} by env id: trains on ids {shown(env_config.train_ids)}; "
        f"evaluated on those and on unseen ids, interpolation {shown(env_config.interpolation_ids)}, extrapolation "
        f"{shown(env_config.extrapolation_ids)}; {observation(env_config)}, action repeat {env_config.action_repeat}, "
        f"{env_config.episode_length // env_config.action_repeat}-step episodes"
    )


def observation(env_config) -> str:
    if not env_config.from_pixels:
        return "state observations"
    return (f"pixel observations ({env_config.frame_stack} stacked {env_config.height}x{env_config.width} frames of "
            f"camera {env_config.camera_id}, uint8)")


def physics_xml(env_name: str, env_id: int) -> tuple[str, dict]:
    """The suite's model XML of the distribution's domain with env id `env_id`'s value, and its assets."""
    distribution = _distributions()[env_name]
    from dm_control import suite

    xml, assets = getattr(suite, distribution.domain).get_model_and_assets()
    root = ElementTree.fromstring(xml)
    distribution.edit(root, distribution.values[env_id - 1])
    return ElementTree.tostring(root, encoding="unicode"), assets


class RenderingError(RuntimeError):
    """A pixel observation could not be rendered; the message names the GL backend and the fix."""


class DMControlEnv(gym.Env):
    """One env id of a distribution as a gymnasium env (as dmc2gym): flat float32 state
    observations, or `pixels` = (height, width, camera id, frames stacked) uint8 frames; actions
    in [-1, 1] repeated `action_repeat` times; episodes truncated after `episode_length` control
    steps. `physics` is the dm_control `Physics` (exact snapshots)."""

    metadata = {"render_modes": ["rgb_array"]}

    def __init__(self, env_name: str, env_id: int, seed: int, action_repeat: int, episode_length: int,
                 pixels: tuple[int, int, int, int] | None = None, render_mode: str | None = None,
                 width: int = 480, height: int = 480, camera_id: int = 0):
        from dm_control import suite

        distribution = _distributions()[env_name]
        xml, assets = physics_xml(env_name, env_id)
        self.physics = getattr(suite, distribution.domain).Physics.from_xml_string(xml, assets)
        self._task = distribution.make_task(np.random.RandomState(seed))
        self._env = control.Environment(self.physics, self._task, time_limit=float("inf"),
                                        control_timestep=distribution.control_timestep)
        self.action_repeat, self.max_agent_steps = action_repeat, episode_length // action_repeat
        self.render_mode, self._render_size, self._camera_id = render_mode, (height, width), camera_id
        spec = self._env.action_spec()
        self._action_low, self._action_high = spec.minimum.astype(np.float64), spec.maximum.astype(np.float64)
        self.action_space = gym.spaces.Box(-1.0, 1.0, spec.shape, np.float32)
        self._pixels, self._frames = pixels, []
        if pixels is None:
            dim = sum(int(np.prod(value.shape)) for value in self._env.observation_spec().values())
            self.observation_space = gym.spaces.Box(-np.inf, np.inf, (dim,), np.float32)
        else:
            frame_height, frame_width, _, frame_stack = pixels
            self.observation_space = gym.spaces.Box(0, 255, (3 * frame_stack, frame_height, frame_width), np.uint8)
        self._steps = 0

    @staticmethod
    def _flat(observation: dict) -> np.ndarray:
        return np.concatenate([np.asarray(value, np.float32).ravel() for value in observation.values()])

    def _observe(self, time_step, first: bool) -> np.ndarray:
        if self._pixels is None:
            return self._flat(time_step.observation)
        height, width, camera_id, frame_stack = self._pixels
        try:
            frame = self.physics.render(height, width, camera_id=camera_id).transpose(2, 0, 1)  # channels first
        except Exception as error:
            raise RenderingError(rendering_failed(error) + " Or train on states: env.from_pixels=False.") from error
        self._frames = [frame] * frame_stack if first else [*self._frames[1:], frame]
        return np.concatenate(self._frames)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        if seed is not None:
            self._task.random.seed(seed)
        self._steps = 0
        return self._observe(self._env.reset(), first=True), {}

    def step(self, action):
        action = np.clip(np.asarray(action, np.float64), -1.0, 1.0)
        action = self._action_low + (action + 1.0) * 0.5 * (self._action_high - self._action_low)
        reward = 0.0
        for _ in range(self.action_repeat):
            time_step = self._env.step(action)
            reward += time_step.reward or 0.0
        self._steps += 1
        return self._observe(time_step, first=False), reward, False, self._steps >= self.max_agent_steps, {}

    def render(self):
        return self.physics.render(*self._render_size, camera_id=self._camera_id)


def make_task_env(task: TaskEnv) -> gym.Env:
    """Env id `<prefix>_<id>` of the distribution `env.name`, its task's randomness (initial
    states) from the request's stream seed."""
    config = task.env_config
    env_id = int(task.name.rsplit("_", 1)[1])
    options = {key: value for key, value in task.render_options.items() if key in ("width", "height", "camera_id")}
    pixels = ((config["height"], config["width"], config["camera_id"], config["frame_stack"])
              if config["from_pixels"] else None)
    return DMControlEnv(config["name"], env_id, task.seed, config["action_repeat"], config["episode_length"], pixels,
                        render_mode=task.render_mode, **options)


FAMILY = EnvFamily(
    env_names=ENV_NAMES,
    default_config=default_config,
    task_names=task_names,
    make_task_env=make_task_env,
    validate=validate,
    describe=describe,
    unseen_task_sets=unseen_task_sets,
    smoke_config={"episode_length": 100},
    reports_success=False,
)
