"""A run's saved `config.json` as a config: rerun or continue a run with exactly its values.

    python train.py --config=runs/mt10/config.json --workdir=runs/mt10
    python train.py --config=configs/from_json.py:runs/mt10/config.json     # the same

`train.py` reads a `--config=` ending in `.json` through this file. A config.json of an
earlier version is upgraded; the run's own extensions are imported.
"""

import json
import pathlib

import ml_collections

from mtsac_jax.config import ConfigError, upgrade
from mtsac_jax.registry import import_extensions


def get_config(arg=None):
    path = pathlib.Path(arg or "")
    if not path.is_file():
        raise ConfigError(f"configs/from_json.py needs a run's config.json as its argument; {str(path)!r} is not a file.")
    try:
        saved = upgrade(json.loads(path.read_text()))
    except (ValueError, AttributeError) as error:
        raise ConfigError(f"{path} is not a run's config.json ({error}).") from None
    import_extensions(saved["extensions"])
    config = ml_collections.ConfigDict(saved)
    config.lock()
    return config
