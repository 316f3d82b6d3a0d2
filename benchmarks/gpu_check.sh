#!/usr/bin/env bash
# GPU checks of issue 15, one run on one CUDA device, under 8 minutes (each part has its own cap):
#   1. python -m pytest -m gpu: CUDA path against the CPU path (loss, gradients, Lyapunov, a fit)
#   2. bench_ensemble.py --device cuda: ms/batch and models*batches/s for E = 1 ... 4096 (LEMON size)
#   3. the paper-protocol Lorenz benchmark at TR 0.5 s: 10 data sets x 10 restarts = 100 models per
#      condition (x 2 noise levels) trained as ONE ensemble per method, paper window/batch sizes;
#      10 epochs x 50 batches instead of 1000 x 50 (the time per step is what is measured) and a
#      reduced evaluation; RESULTS.md is not touched (--no-write).
# Usage (repository root or anywhere): bash benchmarks/gpu_check.sh
# Output: each part's log in $OUT (default benchmarks/gpu_out/), summary lines on stdout.
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-benchmarks/gpu_out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1

run() {  # run <cap seconds> <log name> <command...>: time-capped, logged, never aborts the script
    local cap=$1 log=$OUT/$2
    shift 2
    local t0=$SECONDS
    timeout "$cap" "$@" >"$log" 2>&1
    local rc=$?
    echo "== $(basename "$log"): exit $rc after $((SECONDS - t0)) s (cap $cap s)"
    tail -n 25 "$log"
}

{
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
    python -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, \
'device', torch.cuda.get_device_name() if torch.cuda.is_available() else None)"
} 2>&1 | tee "$OUT/device.txt"
if ! python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "no CUDA device visible to torch: nothing to check"
    exit 1
fi

run 120 pytest_gpu.txt python -m pytest -m gpu -q -p no:cacheprovider
run 150 bench_ensemble_cuda.txt bash -c "cd benchmarks && python bench_ensemble.py \
    --device cuda --sizes 1 4 16 64 256 1024 4096 --repeats 3 --batches 5"
run 200 lorenz_full_cuda.txt python validation/lorenz_benchmark.py --full --device cuda \
    --trs 0.5 --epochs 10 --trajectories 20 --n-ref 20000 --no-write
echo "logs in $OUT"
