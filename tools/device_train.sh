#!/usr/bin/env bash
# Issue 13's prepared GPU run (one NVIDIA GPU, ~16 cores, no network): install monohead and the
# wheels carried in, then tools/device_train.py: version-2 data rendered with Mitsuba's
# cuda_ad_rgb variant, a fine-tune of the shipped network with --device cuda, Table 1 on a
# balanced version-2 test set of a disjoint seed; results (weights, Table 1, curve) in $OUT.
#
# The device machine has PyTorch, NumPy, SciPy, scikit-image, Pillow, matplotlib, pybind11,
# scikit-build-core, CMake and ninja, but not Mitsuba, Dr.Jit, cmeel-eigen or trimesh, and it
# cannot download. Those wheels (cp312, about 70 MiB) travel with the calls, in parts, because
# one call carries at most 64 MiB and the working tree already takes about 41 MiB:
#
#   here:     tools/device_wheels.sh                      # .whl1 .. .whlN, git-ignored, <= 20 MiB each
#             (tree + one part must stay under 64 MiB: check `git ls-files -z | xargs -0 du -cb | tail -1`)
#   device:   tools/device_train.sh stash    carry .whl1  # starts the machine; parts kept in .device-wheels/
#             tools/device_train.sh stash    carry .whl2  # next calls within 30 s, while it is warm
#             tools/device_train.sh stash    carry .whl3  # ... one call per folder but the last
#             tools/device_train.sh [OPTIONS] carry .whlN # install + run (timeout_s 580; about 8 min)
#
#   anywhere: tools/device_train.sh --dry-run [OPTIONS]   # CPU, tiny sizes, no install (tests run it)
#
# OPTIONS go to tools/device_train.py (--budget SECONDS, --procs N, --test-count N, ...).
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE=.device-wheels
OUT=${OUT:-$PWD/device-out}
PY=${PYTHON:-python3}

stash() {
    mkdir -p "$CACHE"
    for d in .whl*/; do
        [ -d "$d" ] || continue
        cp "$d"* "$CACHE"/
    done
    ls -l "$CACHE"
}

if [ "${1:-}" = stash ]; then
    stash
    exit 0
fi

if [ "${1:-}" != --dry-run ]; then
    stash
    # Join the wheels cut in parts (NAME.whl.part-00, -01, ...), then install them and monohead.
    for first in "$CACHE"/*.whl.part-00; do
        [ -e "$first" ] || continue
        whl=${first%.part-00}
        cat "$whl".part-* > "$whl"
    done
    wheels=$(ls "$CACHE"/*.whl 2>/dev/null || true)
    if [ -z "$wheels" ]; then
        echo "device_train.sh: no wheels in $CACHE: carry the parts made by tools/device_wheels.sh" >&2
        exit 2
    fi
    t0=$(date +%s)
    $PY -m pip install -q --no-index --no-deps --no-compile $wheels
    CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) $PY -m pip install -q --no-index --no-deps --no-build-isolation -e .
    echo "device_train.sh: installed in $(( $(date +%s) - t0 )) s" >&2
fi

mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
exec $PY tools/device_train.py --out "$OUT" "$@"
