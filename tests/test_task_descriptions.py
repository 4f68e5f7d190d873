"""The shipped Meta-World task-description embeddings and user embedding files."""

import json

import numpy as np
import pytest
from metaworld.env_dict import ALL_V3_ENVIRONMENTS

from mtsac_jax.registry import ConfigError
from mtsac_jax.task_descriptions import description_embeddings, task_description, v3_name

TASKS = sorted(ALL_V3_ENVIRONMENTS)


def test_shipped_file_covers_every_v3_task_with_distinct_finite_rows():
    embeddings = description_embeddings("metaworld", TASKS)
    assert embeddings.dtype == np.float32 and embeddings.shape[0] == len(TASKS)
    assert embeddings.shape[1] > 0 and np.isfinite(embeddings).all()
    assert len({row.tobytes() for row in embeddings}) == len(TASKS)
    assert all(task_description(name).endswith(".") for name in TASKS)


def test_rows_follow_the_order_asked_for():
    forward = description_embeddings("metaworld", ["push-v3", "reach-v3"])
    backward = description_embeddings("metaworld", ["reach-v3", "push-v3"])
    np.testing.assert_array_equal(forward, backward[::-1])


def test_v1_and_v2_names_map_to_v3():
    assert v3_name("pick-place-v1") == "pick-place-v3"
    assert v3_name("sweep-into-v2") == "sweep-into-v3"
    assert v3_name("dissassemble-v1") == "disassemble-v3"
    assert v3_name("reach-v3") == "reach-v3"
    assert task_description("door-open-v1") == task_description("door-open-v3")


def test_flat_v1_keyed_file_maps_to_v3_names(tmp_path):
    path = tmp_path / "roberta.json"
    flat = {"reach-v1": [1, 2, 3], "dissassemble-v1": [4, 5, 6], "push-v2": [7, 8, 9]}
    path.write_text(json.dumps(flat))
    embeddings = description_embeddings(str(path), ["disassemble-v3", "reach-v3", "push-v3"])
    np.testing.assert_array_equal(embeddings, [[4, 5, 6], [1, 2, 3], [7, 8, 9]])
    assert embeddings.dtype == np.float32


def test_a_v3_key_wins_over_its_v1_alias(tmp_path):
    path = tmp_path / "both.json"
    path.write_text(json.dumps({"reach-v1": [1.0], "reach-v3": [2.0]}))
    assert description_embeddings(str(path), ["reach-v3"]).tolist() == [[2.0]]


def test_shipped_format_is_accepted_as_a_user_file(tmp_path):
    path = tmp_path / "mine.json"
    shipped_format = {"tasks": {"reach-v3": {"description": "Reach.", "embedding": [0.5, 1]}}}
    path.write_text(json.dumps(shipped_format))
    assert description_embeddings(str(path), ["reach-v3"]).tolist() == [[0.5, 1.0]]


def test_a_task_the_file_lacks_is_named(tmp_path):
    path = tmp_path / "mt10.json"
    path.write_text(json.dumps({"reach-v1": [1.0, 2.0], "push-v1": [3.0, 4.0]}))
    lacks = r"no embedding for task\(s\) soccer-v3; it has 2: push-v3, reach-v3"
    with pytest.raises(ConfigError, match=lacks):
        description_embeddings(str(path), ["reach-v3", "soccer-v3"])


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "no file"),
        ("{not json", "not readable JSON"),
        ("[1, 2]", "holds a JSON list"),
        ('{"reach-v1": [1, 2], "push-v1": [1]}', r"differ in length \(reach-v3: 2, push-v3: 1\)"),
        ('{"reach-v1": [1, NaN], "push-v1": [1, 2]}', "embedding of reach-v3 .* finite numbers"),
        ('{"reach-v1": "abc", "push-v1": [1, 2]}', "embedding of reach-v3 .* finite numbers"),
    ],
)
def test_bad_files_raise_config_error(tmp_path, content, message):
    path = tmp_path / "embeddings.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ConfigError, match=message):
        description_embeddings(str(path), ["reach-v3", "push-v3"])


def test_unknown_task_description_suggests_the_closest():
    with pytest.raises(ConfigError, match="Did you mean 'reach-v3'"):
        task_description("reachh-v3")
