#!/usr/bin/env bash
# The GPU measurement as one command, for a machine with one GPU, JAX with CUDA, flax, optax,
# orbax-checkpoint and chex, and no package index (docs/performance.md, section 5):
#
#     bash bench/device/wheels.sh                 # where pip can download: the other packages, as wheels in .whl/
#     bash bench/device/run.sh [OUT]              # on the GPU machine, from a copy of the repository with .whl/
#
# 1. installs the wheels in .whl/ (if any) into a folder of their own, on PYTHONPATH;
# 2. runs bench/device/gpu.py (the measurements, JSON files under OUT, default $OUT or
#    bench/results/device), within its time budget;
# 3. runs the test subset that needs no rendering on the GPU backend, its summary in
#    OUT/gpu_tests.json and its log in OUT/gpu_tests.log.
# Every step's output is also in OUT/run.log. GPU_BENCH_BUDGET (seconds, default 330) and
# GPU_TESTS_TIMEOUT (default 120) bound the two long steps.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT="${1:-${OUT:-bench/results/device}}"
mkdir -p "$OUT"
exec > >(tee -a "$OUT/run.log") 2>&1
PYTHON="${PYTHON:-python3}"
export PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

if compgen -G ".whl/*.whl" >/dev/null; then
  site="${TMPDIR:-/tmp}/mtsac_jax_site"
  echo "installing $(ls .whl/*.whl | wc -l) wheels into $site"
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" .whl/*.whl \
    || { echo "error: the wheels in .whl/ did not install"; exit 1; }
  export PYTHONPATH="$PYTHONPATH:$site"
fi

"$PYTHON" bench/device/gpu.py --out "$OUT" --budget "${GPU_BENCH_BUDGET:-330}" ${GPU_BENCH_ARGS:-}
bench_status=$?

# The tests pick the CPU unless told otherwise (tests/conftest.py); here they run on the GPU.
backend="${GPU_TESTS_PLATFORM:-cuda}"
workers=()
"$PYTHON" -c "import xdist" 2>/dev/null && workers=(-n "${GPU_TESTS_WORKERS:-8}")
JAX_PLATFORMS="$backend" timeout -s INT -k 30 "${GPU_TESTS_TIMEOUT:-120}" "$PYTHON" -m pytest -q -p no:cacheprovider \
  "${workers[@]}" --junitxml="$OUT/gpu_tests.xml" \
  tests/test_sac.py tests/test_networks.py tests/test_architectures.py tests/test_gradients.py \
  tests/test_replay_buffer.py tests/test_buffer_invariants.py tests/test_numerics.py tests/test_distral.py \
  tests/test_policy.py tests/test_env_state.py >"$OUT/gpu_tests.log" 2>&1
tests_status=$?
tail -5 "$OUT/gpu_tests.log"
"$PYTHON" - "$OUT" "$tests_status" "$backend" <<'EOF'
import json, pathlib, sys, xml.etree.ElementTree as tree
out, status, backend = pathlib.Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
summary = {"exit_status": status, "stopped_by_timeout": status in (2, 124), "platform": backend}
report = out / "gpu_tests.xml"
if report.exists():
    suite = tree.parse(report).getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    summary.update({key: int(suite.get(key, 0)) for key in ("tests", "failures", "errors", "skipped")})
    summary["seconds"] = float(suite.get("time", 0))
    summary["failed"] = [f"{case.get('classname')}::{case.get('name')}: {(bad.get('message') or '')[:300]}"
                         for case in suite.iter("testcase") for bad in case if bad.tag in ("failure", "error")]
    report.unlink()
(out / "gpu_tests.json").write_text(json.dumps(summary, indent=1))
print(json.dumps({key: value for key, value in summary.items() if key != "failed"}))
EOF
exit $bench_status
