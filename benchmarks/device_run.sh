#!/usr/bin/env bash
# The checks that need a bigger machine than the 2-vCPU development box: 16 cores and a CUDA GPU.
#
#   OUT=/some/folder bash benchmarks/device_run.sh            # everything (about 8 minutes)
#   QUICK=1 OUT=/some/folder bash benchmarks/device_run.sh    # 2048^2 only (about 3 minutes)
#   SIZES="256" GPU_SIZES="256" bash benchmarks/device_run.sh  # a smoke run of the script
#
# Writes into $OUT (created if needed; default ./device_out):
#   env.txt             machine, cores, GPU, Python packages
#   threads.md/.json    thread scaling: mg and AMGCL at 1, 2, 4, 8, 16 threads (capped at the
#                       cores available) on head+neck 2048^2 and 4096^2 (benchmarks/compare.py)
#   test_gpu.log        python -m pytest -m gpu tests/test_gpu.py tests/test_integrators.py (skips cleanly without CuPy/CUDA)
#   compare_gpu.md/.json  benchmarks/compare_gpu.py: cupy-mg vs a CuPy CSR Jacobi-PCG vs the C++
#                       core; prints the 2048^2 targets (<= 15 ms, >= 20x the Jacobi-PCG)
#   summary.txt         exit status of each step
# Every step runs even when an earlier one failed; the script exits 0 and summary.txt tells.
# Nothing is downloaded: the machine must already have the package's build or runtime
# dependencies (numpy, scipy, pybind11, scikit-build-core, cmeel-eigen; cupy-cuda12x for the GPU
# steps; pyamgcl for the AMGCL rows, which are listed as missing otherwise).
set -u
cd "$(dirname "$0")/.."
OUT="${OUT:-$PWD/device_out}"
mkdir -p "$OUT"
PY="${PYTHON:-python}"
SUMMARY="$OUT/summary.txt"
: > "$SUMMARY"

step() {  # step NAME TIMEOUT_S COMMAND...: run with a timeout, log to $OUT/NAME.log
    local name="$1" limit="$2"
    shift 2
    local t0=$SECONDS
    timeout --kill-after=10 "$limit" "$@" > "$OUT/$name.log" 2>&1
    local rc=$?
    echo "$name: exit $rc after $((SECONDS - t0)) s" >> "$SUMMARY"
    return 0
}

{
    echo "date: $(date -u)"
    echo "host: $(uname -a)"
    echo "cores (affinity): $("$PY" -c 'import os; print(len(os.sched_getaffinity(0)))')"
    lscpu 2>/dev/null | grep -E 'Model name|^CPU\(s\)|Thread|NUMA node\(s\)|L3' || true
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || echo "nvidia-smi: not available"
    "$PY" -m pip list 2>/dev/null | grep -iE '^(numpy|scipy|cupy|pyamgcl|pyamg|monohead|torch) ' || true
} > "$OUT/env.txt" 2>&1

# The compiled core: use the installed one, else build it here (no network needed when the build
# dependencies are installed).
if ! "$PY" -c "import monohead._core" 2> /dev/null; then
    step build 600 "$PY" -m pip install --no-build-isolation --no-deps -e .
fi
"$PY" -c "import monohead._core as c; print('monohead core, OpenMP:', c.openmp)" >> "$OUT/env.txt" 2>&1

CORES=$("$PY" -c 'import os; print(len(os.sched_getaffinity(0)))')
SETTINGS=""
for t in 1 2 4 8 16; do
    if [ "$t" -le "$CORES" ]; then SETTINGS="$SETTINGS $t"; fi
done
SIZES="${SIZES:-2048 4096}"
if [ "${QUICK:-0}" = "1" ]; then SIZES="2048"; fi

# 1. Thread scaling, mg vs AMGCL (each thread count in its own process: OMP_NUM_THREADS and
#    MONOHEAD_NUM_THREADS are read when the libraries load).
# shellcheck disable=SC2086
step threads 420 "$PY" benchmarks/compare.py --threads $SETTINGS --sizes $SIZES --problems head+neck \
    --methods mg amgcl --no-limits --json "$OUT/threads.json"
cp "$OUT/threads.log" "$OUT/threads.md"

# 2. The GPU tests (skip cleanly without CuPy or a device).
step test_gpu 300 "$PY" -m pytest -m gpu tests/test_gpu.py tests/test_integrators.py -q -rs -p no:cacheprovider

# 3. GPU side-by-side table and the 2048^2 targets.
GPU_SIZES="${GPU_SIZES:-512 1024 2048 4096}"
if [ "${QUICK:-0}" = "1" ]; then GPU_SIZES="2048"; fi
# shellcheck disable=SC2086
step compare_gpu 300 "$PY" benchmarks/compare_gpu.py --sizes $GPU_SIZES --json "$OUT/compare_gpu.json"
cp "$OUT/compare_gpu.log" "$OUT/compare_gpu.md"

cat "$SUMMARY"
exit 0
