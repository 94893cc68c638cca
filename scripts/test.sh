#!/usr/bin/env bash
# Installs keras-reliability with every backend into .venv, then runs the
# test suite once per Keras backend (TensorFlow, JAX, PyTorch) on CPU; the
# backend-independent tests run on one leg only (see tests/conftest.py).
# Prints one combined "total: N passed, N failed, N skipped" line and exits
# non-zero if any test failed or if no test ran.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
BACKENDS="${BACKENDS:-tensorflow jax torch}"
# PyTorch 2.13.0 is pinned because its CPU build is available locally here;
# a bare "torch" would pull a multi-GB CUDA build. Override with TORCH_SPEC.
TORCH_SPEC="${TORCH_SPEC:-torch==2.13.0}"

[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check "$TORCH_SPEC"
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".[tensorflow,jax,torch,tfp,plot,test]"
# The example plugins, installed as a user would (not editable): their tests
# check that the registry finds them through their entry points alone.
for plugin in plugins/*/; do
  .venv/bin/python -m pip install -q --disable-pip-version-check "$plugin"
done

# The report tests open the HTML report in headless Chromium (Debian's
# chromium and chromium-driver packages), installed here when missing and
# apt-get is at hand. With the browser present those tests must run: a
# browser that fails to start fails them instead of skipping them.
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive \
      apt-get install -y -qq chromium chromium-driver >/dev/null || true
  fi
fi
if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then
  export KERAS_RELIABILITY_REQUIRE_BROWSER=1
else
  echo "Chromium is not installed: the browser tests of the report will skip."
fi

# Backend-independent tests (BACKEND_INDEPENDENT in tests/conftest.py: numpy,
# plotting, HTML, registry... code that never reaches a backend tensor) give
# the same result on every backend, so they run on one leg only: PyTorch's
# when it runs (a guard there fails any of them that makes a PyTorch call),
# else the first backend listed. The other legs deselect them.
once=""
for backend in $BACKENDS; do
  if [ -z "$once" ] || [ "$backend" = torch ]; then
    once="$backend"
  fi
done

# The PyTorch leg runs on a simulated device (../shared/tools/simulated-device,
# see its README): library code that reads a torch tensor with numpy, which
# works on a CPU but fails on a GPU, fails there as it would on a GPU.
simulated_device="$(cd .. && pwd)/shared/tools/simulated-device"
if [ ! -f "$simulated_device/sitecustomize.py" ]; then
  echo "The simulated device ($simulated_device) is absent: the PyTorch leg runs without the device check."
  simulated_device=""
fi

# Reproductions on real data, the fuzz suite and a few subprocess checks
# (ONE_BACKEND in tests/conftest.py) run on one leg each, chosen among the
# legs listed here.
export KERAS_RELIABILITY_LEGS="$BACKENDS"

# Within a leg, pytest-xdist runs the test files on TEST_WORKERS processes
# (default: one per CPU core; a file stays on one worker, so its module
# fixtures are built once). 1 runs the leg in this process.
workers="${TEST_WORKERS:-$(nproc 2>/dev/null || echo 1)}"
parallel=()
if [ "$workers" -gt 1 ]; then
  parallel=(-n "$workers" --dist loadfile)
  # One thread per worker for PyTorch's CPU kernels: with a worker per core,
  # more only contend (measured: 4 examples 86 s, 59 s with one thread).
  export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
fi

reports="$(mktemp -d)"
status=0
for backend in $BACKENDS; do
  leg=(env KERAS_BACKEND="$backend" TF_CPP_MIN_LOG_LEVEL=3)
  notes=""
  if [ "$backend" = "$once" ]; then
    leg+=(KERAS_RELIABILITY_SKIP_BACKEND_INDEPENDENT=0)
    notes+=", with the backend-independent tests"
  else
    leg+=(KERAS_RELIABILITY_SKIP_BACKEND_INDEPENDENT=1)
  fi
  if [ "$backend" = torch ] && [ -n "$simulated_device" ]; then
    leg+=(KR_SIMULATE_DEVICE=1 PYTHONPATH="$simulated_device${PYTHONPATH:+:$PYTHONPATH}")
    notes+=", on the simulated device"
  fi
  echo "=== KERAS_BACKEND=$backend$notes"
  start=$SECONDS
  "${leg[@]}" .venv/bin/python -m pytest -q "${parallel[@]}" \
    --junitxml="$reports/$backend.xml" "$@" || status=1
  echo "=== KERAS_BACKEND=$backend took $((SECONDS - start)) s"
done
.venv/bin/python scripts/summarize_junit.py "$reports"/*.xml || status=1
exit "$status"
