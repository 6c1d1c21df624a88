#!/usr/bin/env bash
# Set up fedhyper in ./.venv (idempotent): Python 3.11 venv, torch, the project with its
# dev extras, and Fashion-MNIST from Debian's package when apt is at hand.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
VENV=${VENV:-.venv}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}  # pinned: an unpinned torch pulls a multi-GB CUDA build

if [ ! -d /usr/share/datasets/fashion-mnist ] && command -v apt-get >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "setup: installing the Debian package dataset-fashion-mnist"
  ($SUDO apt-get update -qq && $SUDO apt-get install -y -qq dataset-fashion-mnist >/dev/null) \
    || echo "setup: could not install dataset-fashion-mnist; the loader will try the Hugging Face hub"
fi

stamp="$VENV/.fedhyper-installed"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip
  "$VENV/bin/python" -m pip install -q "$TORCH_SPEC"
  "$VENV/bin/python" -m pip install -q -e ".[dev]"
  touch "$stamp"
fi
echo "setup: ready ($("$VENV/bin/python" -c 'import torch, flwr; print("torch", torch.__version__, "/ flwr", flwr.__version__)'))"
