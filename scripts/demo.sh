#!/usr/bin/env bash
# Installs keras-reliability (TensorFlow backend) into .venv and trains a
# digit classifier with CalibrationCallback: prints per-epoch calibration
# diagnostics and writes reliability diagrams to artifacts/digits/.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".[tensorflow,plot,examples]"
TF_CPP_MIN_LOG_LEVEL=3 .venv/bin/python examples/calibrate_digits.py --out artifacts/digits "$@"
