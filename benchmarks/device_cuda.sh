#!/usr/bin/env bash
# The GPU session of issue 25, as one script (about 190 s in all, each part under a timeout):
#   1. pytest -m cuda on tests/test_cuda.py and tests/test_acla_triton.py, then the core choice's and
#      the fused CPU kernel's tests on the machine's own compiler and cores
#   2. benchmarks/gpu.py at short settings (module per core, EDSR training throughput)
#   3. benchmarks/network_step.py --device cuda, the default core, then --only edsr with the plain
#      and the Triton core forced (the figures that decide TRITON_DEFAULT_ON_CUDA)
# Outputs go to $OUT (default /tmp/acla_device_out): one .txt per part, JSON figures, summary.txt.
# Needs no optuna (the one search test skips without it). If pytest is missing on the machine,
# `pip install --target .devdeps pytest` here and carry .devdeps: it is put on PYTHONPATH.
#
#   OUT=/some/dir bash benchmarks/device_cuda.sh        (from anywhere; it runs from the repo root)
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/acla_device_out}
mkdir -p "$OUT"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
if [ -d .devdeps ]; then export PYTHONPATH=$PWD/.devdeps:$PYTHONPATH; fi
PY=${PYTHON:-python}
T0=$(date +%s)

part() {  # part NAME SECONDS CMD...: run CMD under a timeout, output to $OUT/NAME.txt, one summary line
    local name=$1 limit=$2 start rc
    shift 2
    start=$(date +%s)
    timeout -k 5 "$limit" "$@" >"$OUT/$name.txt" 2>&1
    rc=$?
    echo "$name: rc=$rc ($(($(date +%s) - start)) s of $limit s)$([ $rc = 124 ] && echo ' TIMED OUT')" | tee -a "$OUT/summary.txt"
    tail -n 40 "$OUT/$name.txt"
}

{
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1
    $PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.is_available())" 2>&1
    $PY -c "import triton; print('triton', triton.__version__)" 2>&1
    $PY -c "import pytest; print('pytest', pytest.__version__)" 2>&1
} | tee "$OUT/env.txt"

part pytest_cuda 65 $PY -m pytest -m cuda -q -p no:cacheprovider -rs tests/test_cuda.py tests/test_acla_triton.py
# the CPU kernel on this machine's compiler and core count (the CUDA tensors it must refuse included)
part pytest_native 90 $PY -m pytest -q -p no:cacheprovider -rs tests/test_acla_native.py tests/test_acla_cuda.py
part gpu 75 $PY benchmarks/gpu.py --sizes 64,128,256 --repeats 5 --warmup 2 --nonlocal-max 128 --train-steps 8 \
    --json "$OUT/gpu.json"
part network_step 30 $PY benchmarks/network_step.py --device cuda --warmup 2 --repeats 5 --json "$OUT/network_step.json"
for core in plain triton; do
    part "network_step_$core" 30 env ACLA_NAS_CORE=$core $PY benchmarks/network_step.py --device cuda --only edsr \
        --batch 16 --patch 48 --warmup 2 --repeats 5 --json "$OUT/network_step_$core.json"
done
echo "total: $(($(date +%s) - T0)) s" | tee -a "$OUT/summary.txt"
