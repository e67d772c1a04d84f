#!/usr/bin/env bash
# Set up acla-nas in ./.venv: PyTorch 2.13.0 (the local CPU wheel) first when no torch is
# importable, so that no other torch build (and no CUDA download) is ever pulled; then the package
# with its test extra. Safe to run again: it only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  .venv/bin/python -m pip install -q "torch==2.13.0"
fi
.venv/bin/python -m pip install -q -e ".[dev]"
.venv/bin/python -c "import torch, acla_nas; print(f'acla-nas {acla_nas.__version__} ready (torch {torch.__version__})')"
