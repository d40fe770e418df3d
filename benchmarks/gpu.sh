#!/usr/bin/env bash
# The GPU path (issue 19): on a CUDA machine, in one call and in under 8 minutes, install what pgrad
# needs, run the tests that touch devices on the GPU, and print a table of SAC, TD3 and PPO steps per
# second on CUDA for pgrad (one seed and --seeds 16), SB3 and, if its CUDA build installs, SBX.
#
#   bash benchmarks/gpu.sh                       # on the CUDA machine: table in benchmarks/results/gpu.json
#   DEVICE=cpu SCALE=0.05 bash benchmarks/gpu.sh # the same script, tiny, on a CPU (how it is checked here)
set -euo pipefail
cd "$(dirname "$0")/.."
DEVICE=${DEVICE:-cuda}
SCALE=${SCALE:-1}
PY=.venv/bin/python

make .venv/.installed >/dev/null   # the project's venv (the registry's torch 2.13.0: its CUDA build on Linux)
if [ "$DEVICE" != cpu ]; then
  $PY -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 'torch sees no CUDA device: ' + torch.__version__)"
  $PY -c "import torch; print('torch', torch.__version__, 'on', torch.cuda.get_device_name(0))"
fi

# The tests that touch devices (device parsing and its errors, loading onto a device, export), with
# pgrad's default device: cuda when available.
$PY -m pytest -q -m "not slow" -p no:cacheprovider tests/test_workflow.py tests/test_bad_input.py tests/test_export.py \
  -k "device or load or export" 2>&1 | tail -3

# SBX with JAX's CUDA build in its own venv, when the registry has one for this machine (else no column).
SBX=""
if [ "$DEVICE" != cpu ]; then
  if { test -x .venv-sbx-cuda/bin/python || python3 -m venv .venv-sbx-cuda; } &&
     .venv-sbx-cuda/bin/python -m pip install -q sbx-rl "jax[cuda12]" gymnasium >/dev/null 2>&1 &&
     .venv-sbx-cuda/bin/python -c "import jax; assert jax.default_backend() == 'gpu'" 2>/dev/null; then
    SBX="--sbx-python .venv-sbx-cuda/bin/python"
  else
    echo "SBX: its CUDA build did not install or found no GPU here; no SBX column"
  fi
fi

mkdir -p benchmarks/results
OUT=benchmarks/results/gpu.json
[ "$DEVICE" = cpu ] && OUT=$(mktemp --suffix=.json)
$PY benchmarks/gpu_table.py --device "$DEVICE" --scale "$SCALE" --seeds 16 --out "$OUT" $SBX
