"""Non-finite updates: detected inside the jitted update, never adopted, named to the user.

`guarded(update)` runs an agent's update and checks every metric and every floating-point leaf
of the new train state (parameters, optimizer moments, temperatures, a gradient method's state:
a non-finite gradient shows in the parameters and moments Adam computes from it). If anything
is not finite, the state given is returned unchanged, so a bad state never reaches a checkpoint.
The checks are reductions over arrays the update has just written; `bench/nan_guard.py`
measures their cost. What the run does next is `experiment.nan_policy`'s: `stop` (the run ends
with the message of `describe`, its last checkpoint kept) or `skip` (the update is dropped and
counted; `experiment.max_skipped_updates` in a row end the run as `stop` does).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

NAN_POLICIES = ("stop", "skip")


def state_parts(state, prefix: str = ""):
    """(name, value) of each part of a train state: the fields of its dataclasses, nested ones
    named by their path (`critic.params`, `actor.opt_state`, `sac.temperature.params`, ...)."""
    for field in dataclasses.fields(state):
        value, name = getattr(state, field.name), prefix + field.name
        if dataclasses.is_dataclass(value):
            yield from state_parts(value, name + ".")
        else:
            yield name, value


def state_faults(state) -> dict[str, jax.Array]:
    """{part: () bool}: whether any floating-point leaf of that part of `state` is not finite."""
    faults: dict[str, jax.Array] = {}
    for name, value in state_parts(state):
        bad = [~jnp.isfinite(leaf).all() for leaf in jax.tree.leaves(value)
               if jnp.issubdtype(jnp.result_type(leaf), jnp.floating)]
        if bad:
            faults[name] = functools.reduce(jnp.logical_or, bad)
    return faults


def guarded(update: Callable) -> Callable:
    """`update(state, buffer) -> (state, metrics)` as `(state, metrics, fault)`.

    `fault` holds `any` (() bool), `metrics` ({name: (T,) bool}, the tasks whose metric is not
    finite) and `state` ({field: () bool}); when `any`, the state returned is the one given."""

    def run(state, buffer):
        new_state, metrics = update(state, buffer)
        metric_faults = {name: ~jnp.isfinite(value) for name, value in metrics.items()}
        field_faults = state_faults(new_state)
        bad = jnp.stack([*(f.any() for f in metric_faults.values()), *field_faults.values()]).any()
        state = jax.lax.cond(bad, lambda: state, lambda: new_state)
        return state, metrics, {"any": bad, "metrics": metric_faults, "state": field_faults}

    return run


def describe(fault: dict, step: int, task_names: tuple[str, ...]) -> str:
    """What was not finite at `step`: each metric with its tasks, else the state fields."""
    fault = jax.device_get(fault)
    parts = []
    for name, bad in fault["metrics"].items():
        tasks = [task_names[index] for index in np.flatnonzero(np.atleast_1d(bad))]
        if tasks:
            parts.append(f"{name} (task{'s' if len(tasks) > 1 else ''} {', '.join(tasks)})")
    if not parts:
        parts = [f"values in the new {', '.join(field for field, bad in fault['state'].items() if bad)}"]
    return f"step {step}: non-finite {'; '.join(parts)}"
