#!/usr/bin/env bash
# Set up ./.venv-nni: NNI's tuners next to acla-nas without touching ./.venv. NNI 3.0 pins
# filelock<3.12 and typeguard<4.1.3 (older than what .venv resolves), so it gets a virtual
# environment of its own that reuses .venv's packages (torch included: no second torch download)
# through a .pth file placed after its own site-packages: NNI's pins shadow .venv's versions
# there and nowhere else. Installs the `nni` extra of pyproject.toml. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "setup-nni: .venv is missing; setting it up first (scripts/setup.sh: torch, acla-nas and its test extra)"
  bash scripts/setup.sh
fi
[ -x .venv-nni/bin/python ] || "$PY" -m venv .venv-nni
purelib() { "$1" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])"; }
printf '%s\n%s\n' "$(purelib .venv/bin/python)" "$PWD" > "$(purelib .venv-nni/bin/python)/acla_main_venv.pth"
mapfile -t extra < <(.venv/bin/python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['optional-dependencies']['nni']))")
.venv-nni/bin/python -m pip install -q "${extra[@]}" "setuptools>=77"  # torch (from .venv) wants setuptools>=77
.venv-nni/bin/python -c "import nni, torch, acla_nas; print(f'.venv-nni ready: nni {nni.__version__}, torch {torch.__version__} (from .venv)')"
