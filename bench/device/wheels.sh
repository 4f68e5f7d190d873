#!/usr/bin/env bash
# Downloads, as CPython 3.12 x86-64 wheels into .whl/, what a GPU machine with JAX, flax, optax,
# orbax-checkpoint and chex lacks for bench/device/run.sh: Meta-World and MuJoCo, gymnasium,
# ml_collections, tensorboardX, and SBX with its own needs (for the SBX comparison). Run it where
# pip reaches PyPI; bench/device/run.sh installs them on the GPU machine.
#
#     bash bench/device/wheels.sh [PYTHON]
set -euo pipefail
cd "$(dirname "$0")/../.."
PYTHON="${1:-${PYTHON:-python3}}"
PINS=(
  mujoco==3.3.0 metaworld==3.1.1 gymnasium==1.4.0 farama-notifications==0.0.6 glfw==2.11.0 pyopengl==3.1.10
  ml_collections==1.1.0 tensorboardX==2.6.5
  sbx-rl==0.28.0 stable-baselines3==2.9.2 tfp-nightly==0.26.0.dev20261027 decorator==5.3.1 gast==0.7.0 dm-tree==0.1.10
)
platforms=()
for platform in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_24_x86_64 manylinux_2_17_x86_64 \
                manylinux2014_x86_64 manylinux1_x86_64; do
  platforms+=(--platform "$platform")
done
mkdir -p .whl
"$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  "${platforms[@]}" -d .whl "${PINS[@]}"
du -sh .whl
