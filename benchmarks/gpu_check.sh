#!/usr/bin/env bash
# The device check, in one call on a lent GPU machine (sized for one 10-minute command):
#   1. IFDD on `synthetic` under its CUDA recipe against the static control (tests/test_gpu.py, first test);
#   2. the rest of `pytest -m gpu` (mixed precision with and without compile, device augmentation, profile);
#   3. benchmarks/gpu.py (IFDD train throughput fp32 / bf16 / bf16 + compile, MFU, loader feed), JSON in $OUT.
# Usage: benchmarks/gpu_check.sh   (from the repository root; OUT defaults to results/gpu_check)
set -u -o pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=${OUT:-results/gpu_check}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
status=0
"$PY" -m pytest -m gpu -n 0 -s -v -rA tests/test_gpu.py 2>&1 | tee "$OUT/pytest_gpu.txt" || status=1
"$PY" benchmarks/gpu.py --seconds 10 --json "$OUT/gpu.json" 2>&1 | tee "$OUT/gpu_benchmark.txt" || status=1
exit $status
