#!/usr/bin/env bash
# Creates the Python environment of the peer systems of bench/peer_update.py: CPU-only PyTorch,
# stable-baselines3, and sbx-rl on JAX, at pinned versions, in a venv of its own (their
# dependencies would clash with the project's). Idempotent: an environment that already has
# the pinned versions is left as it is.
#
#     bash bench/peer_venv.sh [VENV]
#     python bench/peer_update.py --peer-python VENV/bin/python
#
# VENV defaults to $MTSAC_PEER_VENV, else ~/.cache/mtsac_jax/peer-venv. $PYTHON is the
# interpreter that creates it (python3). PyTorch's CPU build comes from $PEER_TORCH_INDEX
# (https://download.pytorch.org/whl/cpu; set it empty to use only pip's configured indexes).
set -euo pipefail

VENV="${1:-${MTSAC_PEER_VENV:-$HOME/.cache/mtsac_jax/peer-venv}}"
TORCH_INDEX="${PEER_TORCH_INDEX-https://download.pytorch.org/whl/cpu}"
PINS=(
  "torch==2.13.0+cpu"
  "stable-baselines3==2.9.2"
  "sbx-rl==0.28.0"
  "jax==0.10.2"
  "jaxlib==0.10.2"
  "gymnasium==1.3.0"
)

has_pins() {
  [ -x "$VENV/bin/python" ] && "$VENV/bin/python" - "${PINS[@]}" <<'EOF' 2>/dev/null
import importlib.metadata, sys
sys.exit(any(importlib.metadata.version(name) != version
             for name, version in (pin.split("==") for pin in sys.argv[1:])))
EOF
}

if has_pins; then
  echo "$VENV has the pinned versions; nothing to do"
  exit 0
fi
[ -x "$VENV/bin/python" ] || "${PYTHON:-python3}" -m venv "$VENV"
constraints="$VENV/peer-pins.txt"
printf '%s\n' "${PINS[@]}" > "$constraints"
index=()
[ -z "$TORCH_INDEX" ] || index=(--extra-index-url "$TORCH_INDEX")
# torch first and alone, from the CPU index, so no later step can pull a CUDA build
"$VENV/bin/python" -m pip install --quiet "${index[@]}" -c "$constraints" torch
"$VENV/bin/python" -m pip install --quiet -c "$constraints" stable-baselines3 sbx-rl jax jaxlib gymnasium
has_pins || { echo "error: $VENV does not have the pinned versions after installing" >&2; exit 1; }
"$VENV/bin/python" -m pip list --format=freeze 2>/dev/null \
  | grep -E -i '^(torch|stable.baselines3|sbx.rl|jax|jaxlib|flax|optax|gymnasium|numpy)=='
echo "ready: $VENV/bin/python"
