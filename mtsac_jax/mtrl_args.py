"""mtrl's command lines, as its documentation writes them: Hydra-style `key=value` words.

    python train.py setup=metaworld agent=state_sac env=metaworld-mt10 setup.seed=1 \\
        agent.multitask.should_use_multi_head_policy=True replay_buffer.batch_size=1280
    python main.py -m setup=metaworld agent=state_sac env=metaworld-mt10 setup.seed=1,2,3

`setup=`, `agent=` and `env=` (and this project's `network=`, `gradient=`, and `protocol=mtrl`
for mtrl's env protocol) choose the composition (`configs/compose.py`); every other word becomes a `--config.` override, through
`MTRL_KEYS` where mtrl's key differs from ours. A key that is neither ours nor in `MTRL_KEYS`
stops the command with a message naming it. The word `smoke` shrinks the composed config as
`configs/compose.py:...,smoke` does. With `-m` (Hydra's multirun), comma-separated
values run one after the other, one run per combination. Words and `--config.` flags mix: a
`--config=` file with composition words is refused, since the file already chose them.
"""

from __future__ import annotations

import difflib
import itertools

from mtsac_jax.registry import ConfigError

COMPOSITION = ("setup", "agent", "env", "network", "gradient", "protocol")
WORKDIR_KEYS = ("hydra.run.dir", "setup.save_dir")  # mtrl's (Hydra's) keys for the run's folder: --workdir
MULTIRUN = ("-m", "--multirun")
SMOKE = "smoke"

# mtrl's actor_cfg / critic_cfg task-info flags: True for either means the task id is part of the
# network's input, which here is the one-hot task id appended to the observation.
_TASK_INFO = tuple(
    f"agent.multitask.{network}_cfg.{flag}"
    for network in ("actor", "critic")
    for flag in (
        "should_condition_model_on_task_info",
        "should_condition_encoder_on_task_info",
        "should_concatenate_task_info_with_encoder",
    )
)

# mtrl's encoder types -> the network that does the same here (a composition choice).
ENCODER_TYPES = {"identity": "mlp", "film": "film", "moe": "care"}
ENCODER_TYPE = "agent.encoder.type_to_select"
PRETRAINED = "agent.multitask.task_encoder_cfg.model_cfg.pretrained_embedding_cfg"

# mtrl key -> (our key, what it means here). Keys that are the same here (experiment.*,
# replay_buffer.*, agent.multitask.*, ...) need no entry.
MTRL_KEYS = {
    "setup.seed": ("seed", "the run's seed"),
    "agent.multitask.task_encoder_cfg.model_cfg.embedding_dim": (
        "agent.multitask.task_encoder.embedding_dim", "size of the learned task embedding"),
    "experiment.save.model.retain_last_n": (
        "experiment.keep_checkpoints", "checkpoints kept (-1, keep all: 1000000 here)"),
    ENCODER_TYPE: ("network=", "the network: identity -> mlp, film -> film, moe -> care"),
    "agent.encoder.moe.num_experts": ("agent.network.num_experts", "CARE's number of encoders"),
    "agent.encoder.moe.task_id_to_encoder_id_cfg.mode": (None, "`attention` only: CARE's attention over the encoders"),
    f"{PRETRAINED}.should_use": (
        "agent.multitask.task_encoder.description_embeddings", "True: the shipped task-description embeddings"),
    f"{PRETRAINED}.path_to_load_from": (
        "agent.multitask.task_encoder.description_embeddings", "a JSON file of task-description embeddings"),
    **{key: ("env.use_one_hot", "task id in the input: the one-hot task id in the observation") for key in _TASK_INFO},
    "env.train": ("env.train_ids", "the env ids of a DMControl distribution a run trains on"),
    "env.eval.interpolation": ("env.interpolation_ids", "the unseen env ids of the interpolation evaluation"),
    "env.eval.extrapolation": ("env.extrapolation_ids", "the unseen env ids of the extrapolation evaluation"),
}

# mtrl keys that exist here with another meaning: refused, with the explanation.
MTRL_OTHER_MEANING = {
    key: "mtrl's distral_alpha is the KL's coefficient beside SAC's tuned temperature, and its distral_beta is "
    "unused; here they are the paper's alpha (the KL's share, in [0, 1]) and beta (the inverse temperature, "
    "fixed), Teh et al. 2017, eq. 2. Fix: pass the paper's values as --config.agent.distral_alpha=... and "
    "--config.agent.distral_beta=... flags"
    for key in ("agent.distral_alpha", "agent.distral_beta")
}


def hydra_flags(argv: list[str]) -> list[str]:
    """Hydra's `--cfg job` (print the resolved config) as `--print_config`."""
    out, previous = [], None
    for arg in argv:
        if arg == "--cfg=job" or (arg == "job" and previous == "--cfg"):
            out.append("--print_config")
        elif arg != "--cfg":
            out.append(arg)
        previous = arg
    return out


def split(argv: list[str]) -> tuple[list[str], list[str], bool]:
    """(flags and program, `key=value` words, multirun?) of a command line."""
    flags, words, multirun = argv[:1], [], False
    for arg in argv[1:]:
        if arg in MULTIRUN:
            multirun = True
        elif arg == SMOKE or (not arg.startswith("-") and "=" in arg):
            words.append(arg)
        else:
            flags.append(arg)
    return flags, words, multirun


def expand(words: list[str]) -> list[list[str]]:
    """Hydra's multirun sweep: one list of words per combination of comma-separated values."""
    flags = [word for word in words if word == SMOKE]
    pairs = [word for word in words if word != SMOKE]
    keys = [word.partition("=")[0] for word in pairs]
    values = [_sweep(word.partition("=")[2]) for word in pairs]
    combinations = len(list(itertools.product(*values)))
    for key, options in zip(keys, values):
        if key.lstrip("+") in WORKDIR_KEYS and len(options) < combinations:
            raise ConfigError(
                f"{key}={options[0]} would put {combinations} runs of this sweep into one folder. Fix: drop it (each "
                "run gets a default folder of its own), or sweep it too: -m ... " + f"{key}=<folder 1>,<folder 2>,...")
    return [[f"{key}={value}" for key, value in zip(keys, combination)] + flags
            for combination in itertools.product(*values)]


def _sweep(value: str) -> list[str]:
    """The values of a multirun word: comma-separated, except a bracketed list (Hydra's `[1,2]`), one value."""
    return [value] if value.startswith("[") and value.endswith("]") else value.split(",")


def translate(words: list[str], flags: list[str], compose_file: str, our_keys) -> list[str]:
    """absl flags for `words` (one run's), added to `flags`. `our_keys(config_arg)` gives the
    dotted keys of the config that `compose_file:config_arg` builds; with a `--config=` file of
    the user's, the locked config itself names a key it lacks."""
    pairs, smoke = {}, SMOKE in words
    for word in (word for word in words if word != SMOKE):
        key, _, value = word.partition("=")
        if len(_sweep(value)) > 1 and key not in COMPOSITION:
            raise ConfigError(f"{word}: several values run as a sweep with -m (Hydra's multirun), e.g. -m {word}.")
        pairs[key.lstrip("+")] = value
    choices = {key: pairs.pop(key) for key in COMPOSITION if key in pairs}
    for key in WORKDIR_KEYS:
        if key in pairs:
            folder = pairs.pop(key)
            if any(flag.startswith("--workdir") for flag in flags):
                raise ConfigError(f"{key}={folder} and --workdir (or {' and '.join(WORKDIR_KEYS)}) both name the "
                                  "run's folder. Fix: give one of them.")
            flags = [*flags, f"--workdir={folder}"]
    if ENCODER_TYPE in pairs:
        encoder = pairs.pop(ENCODER_TYPE)
        if encoder not in ENCODER_TYPES:
            raise ConfigError(
                f"{ENCODER_TYPE}={encoder} has no equivalent here; mtrl's encoder types map to networks: "
                + ", ".join(f"{k} -> network={v}" for k, v in ENCODER_TYPES.items()) + "."
            )
        if ENCODER_TYPES[encoder] != choices.get("network", ENCODER_TYPES[encoder]):
            raise ConfigError(f"{ENCODER_TYPE}={encoder} and network={choices['network']} choose different networks.")
        if encoder != "identity":
            choices["network"] = ENCODER_TYPES[encoder]
    config_flags = [flag for flag in flags if flag.startswith("--config=") or flag == "--config"]
    if config_flags and choices:
        raise ConfigError(
            f"{' '.join(f'{k}={v}' for k, v in choices.items())} and {config_flags[0]} both choose the "
            "composition. Fix: give either the config file or the setup=/agent=/env= words."
        )
    if config_flags and smoke:
        raise ConfigError(
            f"the word smoke shrinks a config composed from words; {config_flags[0]} is a config file. Fix: give "
            f"the file `smoke` in its argument ({config_flags[0].split(':')[0]}:smoke, or add ,smoke after its argument)."
        )
    if config_flags:
        config_arg = None
    else:
        config_arg = ",".join(f"{key}={value}" for key, value in {
            "setup": "metaworld", "agent": "state_sac", "env": "metaworld-mt10", **choices}.items())
        config_arg += ",smoke" if smoke else ""
        flags = [*flags, f"--config={compose_file}:{config_arg}"]
    known = our_keys(config_arg) if config_arg is not None else None
    overrides, one_hot = [], {}
    for key, value in pairs.items():
        if key in MTRL_OTHER_MEANING:
            raise ConfigError(f"{key}={value}: {MTRL_OTHER_MEANING[key]}.")
        if key in MTRL_KEYS:
            ours, meaning = MTRL_KEYS[key]
            if key in _TASK_INFO:
                one_hot[key] = _bool(key, value)
                continue
            if ours is None:
                if value != "attention":
                    raise ConfigError(f"{key}={value} has no equivalent here: {meaning}.")
                continue
            if key == f"{PRETRAINED}.should_use":
                if not _bool(key, value):
                    continue
                value = "metaworld"
            if key == "experiment.save.model.retain_last_n" and value == "-1":
                value = "1000000"
            key = ours
        if known is not None and key not in known:
            close = difflib.get_close_matches(key, [*known, *MTRL_KEYS], n=1)
            raise ConfigError(
                f"{key}={value}: mtrl's key {key!r} has no equivalent here."
                + (f" Did you mean {close[0]}?" if close else "")
                + " Supported: every key of the config (python train.py ... --print_config lists them) and these "
                "mtrl keys: " + ", ".join(sorted(MTRL_KEYS)) + "."
            )
        overrides.append(f"--config.{key}={_integral(value)}")
    if choices.get("network", "mlp") != "mlp":
        # mtrl's film and moe encoders read the task through the task encoder, not the observation;
        # its task-info flags say how the encoding reaches the encoder, which the network does itself
        overrides.append("--config.env.use_one_hot=False")
    elif one_hot:
        overrides.append(f"--config.env.use_one_hot={_one_hot(one_hot)}")
    flagged = {flag.split("=", 1)[0] for flag in flags if flag.startswith("--config.")}
    twice = sorted(flagged & {flag.split("=", 1)[0] for flag in overrides})
    if twice:
        raise ConfigError(
            f"{', '.join(key.removeprefix('--config.') for key in twice)} given twice, as a --config. flag and as a "
            "key=value word (mtrl's key maps to it). Fix: give each key once."
        )
    return [*flags, *overrides]


def _one_hot(one_hot: dict[str, bool]) -> bool:
    """`env.use_one_hot` from mtrl's task-info flags: True if any of the actor's (or, without
    actor flags, the critic's) is True; actor and critic must agree."""
    actor = [value for key, value in one_hot.items() if ".actor_cfg." in key]
    critic = [value for key, value in one_hot.items() if ".critic_cfg." in key]
    if actor and critic and any(actor) != any(critic):
        raise ConfigError(
            "mtrl's actor_cfg and critic_cfg task-info flags disagree. Here actor and critics see the same "
            "observation (with or without the one-hot task id, env.use_one_hot). Fix: make them agree."
        )
    return any(actor) if actor else any(critic)


def _integral(value: str) -> str:
    """Hydra reads `1e6` as a number; a whole number in that form becomes `1000000`, which an
    integer key takes (and a float key too)."""
    try:
        number = float(value)
    except ValueError:
        return value
    return str(int(number)) if "e" in value.lower() and number.is_integer() and abs(number) < 1e18 else value


def _bool(key: str, value: str) -> bool:
    if value.lower() in ("true", "1"):
        return True
    if value.lower() in ("false", "0"):
        return False
    raise ConfigError(f"{key}={value}: expected True or False.")
