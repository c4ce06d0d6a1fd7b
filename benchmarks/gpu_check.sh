#!/usr/bin/env bash
# The GPU checks, in one run of at most ~8 minutes (each step has its own time limit, so the script
# always finishes and prints what it measured): the CUDA tests natively (the Triton kernels without the
# interpreter, the ops' CUDA cases, the whole model on both paths), then the benchmarks' CUDA tables.
#
#     bash benchmarks/gpu_check.sh            # from the repository root; PYTHON=... to choose the interpreter
#
# Every step prints its output and its exit status; the summary at the end lists them.
set -u
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
[ -x "$PY" ] || PY=python3
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"
SUMMARY=()

step() {  # step NAME SECONDS COMMAND...: run COMMAND with a time limit, record its exit status
    local name="$1" limit="$2"
    shift 2
    echo
    echo "=== $name (limit ${limit}s): $*"
    local start=$SECONDS
    timeout --kill-after=10 "$limit" "$@"
    local status=$?
    SUMMARY+=("$(printf '%-34s exit %3d  %4ds' "$name" "$status" "$((SECONDS - start))")")
}

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
"$PY" -c "import torch, torchvision, triton; print('torch', torch.__version__, 'torchvision', torchvision.__version__,
'triton', triton.__version__, 'cuda', torch.cuda.is_available())"

# 1. Tests: the kernel cases natively on CUDA tensors, the op tests' CUDA cases, the model on both paths.
step "tests: kernels, ops, model (CUDA)" 150 "$PY" -m pytest -q -rs -p no:cacheprovider \
    tests/test_triton_ops.py tests/test_triton_cuda.py tests/test_triton_dispatch.py \
    tests/test_ops.py tests/test_roi_align.py tests/test_roi_pool_warp.py
step "tests: the rest marked cuda" 60 "$PY" -m pytest -q -rs -p no:cacheprovider -m cuda tests \
    --deselect tests/test_triton_cuda.py

# 2. Benchmarks: ops (Triton, reference, torchvision), the R50-FPN model in float32 and bfloat16, compile.
step "benchmarks/ops.py (CUDA)" 60 "$PY" benchmarks/ops.py --device cuda --repeat 10
step "benchmarks/model.py fp32" 100 "$PY" benchmarks/model.py --device cuda --repeat 10 --small-repeat 10
step "benchmarks/model.py bf16" 60 "$PY" benchmarks/model.py --device cuda --amp bf16 --repeat 10 --batches 2 \
    --small-repeat 5
step "benchmarks/compile.py (CUDA)" 150 "$PY" benchmarks/compile.py --device cuda --warmup 2 --repeat 5

echo
echo "=== summary"
printf '%s\n' "${SUMMARY[@]}"
