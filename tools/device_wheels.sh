#!/usr/bin/env bash
# Here, before a GPU run: download the wheels tools/device_train.sh needs on the device machine
# (Python 3.12, x86-64; pip must reach PyPI) and cut them into folders .whl1, .whl2, ... of at
# most ${PART_MIB:-20} MiB each, so that the working tree (about 41 MiB) plus one folder fits in
# one call's 64 MiB. The folders are git-ignored; carry one per call (see device_train.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
PART_MIB=${PART_MIB:-20}
PY=${PYTHON:-python3}
dl=$(mktemp -d)
trap 'rm -rf "$dl"' EXIT
# Versions: the ones this checkout is tested with (mitsuba 3.9.1 and its drjit 1.5.0).
$PY -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d "$dl" mitsuba==3.9.1 drjit==1.5.0 cmeel-eigen==3.4.1 cmeel "trimesh>=4"
rm -rf .whl[0-9]*
$PY - "$dl" "$PART_MIB" <<'EOF'
import sys
from pathlib import Path

src, limit = Path(sys.argv[1]), int(sys.argv[2]) * 2**20
chunk = 10 * 2**20
pieces = []  # (name, bytes): whole small wheels, parts of big ones
for whl in sorted(src.glob("*.whl"), key=lambda p: -p.stat().st_size):
    data = whl.read_bytes()
    if len(data) <= chunk:
        pieces.append((whl.name, data))
    else:
        pieces += [(f"{whl.name}.part-{k:02d}", data[o:o + chunk]) for k, o in enumerate(range(0, len(data), chunk))]
folders, used = [], []
for name, data in pieces:
    for i, u in enumerate(used):
        if u + len(data) <= limit:
            break
    else:
        folders.append([]), used.append(0)
        i = len(used) - 1
    folders[i].append((name, data))
    used[i] += len(data)
for i, items in enumerate(folders, 1):
    d = Path(f".whl{i}")
    d.mkdir()
    for name, data in items:
        (d / name).write_bytes(data)
    print(f"{d}: {used[i - 1] / 2**20:.1f} MiB, {len(items)} file(s)")
EOF
