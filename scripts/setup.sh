#!/usr/bin/env bash
# Set up fedhyper in ./.venv (idempotent): Python 3.11 venv, torch, the project with its
# dev and tracking extras, and Fashion-MNIST from Debian's package when apt is at hand.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
VENV=${VENV:-.venv}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}  # pinned: an unpinned torch pulls a multi-GB CUDA build

# Fashion-MNIST: Debian's dataset-fashion-mnist when this machine can install it; otherwise the loader
# downloads it from the Hugging Face hub on first use. A failed apt-get is not retried on every call.
DATA_DIR=/usr/share/datasets/fashion-mnist
apt_failed="$VENV/.fedhyper-apt-failed"
from_hub="Fashion-MNIST will be downloaded from the Hugging Face hub on first use (or set data.root=<folder of IDX files>)"
if [ ! -d "$DATA_DIR" ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "setup: no apt-get on this machine, so $DATA_DIR cannot be installed; $from_hub"
  elif [ -n "$SUDO" ] && ! sudo -n true >/dev/null 2>&1; then
    echo "setup: installing $DATA_DIR needs root (or password-less sudo); $from_hub"
  elif [ -f "$apt_failed" ]; then
    echo "setup: dataset-fashion-mnist could not be installed before (remove $apt_failed to retry); $from_hub"
  else
    echo "setup: installing the Debian package dataset-fashion-mnist"
    if ! ($SUDO apt-get update -qq && $SUDO apt-get install -y -qq dataset-fashion-mnist >/dev/null); then
      mkdir -p "$VENV" && touch "$apt_failed"
      echo "setup: could not install dataset-fashion-mnist; $from_hub"
    fi
  fi
fi

stamp="$VENV/.fedhyper-installed"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip
  "$VENV/bin/python" -m pip install -q "$TORCH_SPEC"
  "$VENV/bin/python" -m pip install -q -e ".[dev,tracking]"  # tracking: TensorBoard and MLflow
  touch "$stamp"
fi
echo "setup: ready ($("$VENV/bin/python" -c 'import torch, flwr; print("torch", torch.__version__, "/ flwr", flwr.__version__)'))"
