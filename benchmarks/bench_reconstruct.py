"""Photo -> mesh at 128², split into detection, network, integration and meshing.

Run: ``python -m pytest benchmarks/bench_reconstruct.py --benchmark-enable -p no:cacheprovider``
(pytest-benchmark, whole pipeline), or ``python benchmarks/bench_reconstruct.py [--runs 20]``
for the table of the split (mean and best over the runs, after warm-up), with the default mirror
averaging (two network passes) and with ``--no-flip`` (one pass), for the default detector
(``combined``: cascades plus the network's coarse pass) and the old one (``frontal``). Photos: the
astronaut bundled with scikit-image (512 x 512, an array), and the same photo enlarged to a
4000 x 3000 (12 MP) JPEG file read from disk (decoding included). Needs the shipped weights.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pytest

STAGES = ("detection", "network", "integration", "meshing")


def _setup():
    from skimage import data

    from monohead import photo as reconstruct
    from monohead.model import load_pretrained

    try:
        model = load_pretrained()
    except FileNotFoundError as exc:  # a checkout without weights
        pytest.skip(str(exc))
    photo = data.astronaut()
    for _ in range(3):  # warm-up: cascade load, torch kernels, allocations
        reconstruct.reconstruct(photo, model=model)
    return reconstruct, model, photo


@pytest.mark.parametrize("flip", [True, False], ids=["flip", "no_flip"])
def test_photo_to_mesh(benchmark, flip):
    reconstruct, model, photo = _setup()
    rec = benchmark(reconstruct.reconstruct, photo, model=model, flip=flip)
    benchmark.extra_info.update({k: rec.seconds[k] for k in STAGES})
    assert len(rec.mesh.faces) > 0


def _big_jpeg(tmp: Path) -> Path:
    from PIL import Image
    from skimage import data

    path = tmp / "astronaut_12mp.jpg"
    big = Image.fromarray(data.astronaut()).resize((3000, 3000), Image.BICUBIC)
    canvas = Image.new("RGB", (4000, 3000), (120, 110, 100))
    canvas.paste(big, (500, 0))
    canvas.save(path, quality=92)
    return path


def _time(fn, runs: int) -> np.ndarray:
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return np.array(out) * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=20)
    args = ap.parse_args()
    reconstruct, model, photo = _setup()
    split: dict[bool, list[list[float]]] = {True: [], False: []}
    total: dict[bool, list[float]] = {True: [], False: []}
    for _ in range(args.runs):  # interleaved, so that both see the same machine load
        for flip in (True, False):
            t0 = time.perf_counter()
            rec = reconstruct.reconstruct(photo, model=model, flip=flip)
            total[flip].append(time.perf_counter() - t0)
            split[flip].append([rec.seconds[k] for k in STAGES])
    print(f"photo -> mesh, astronaut 512x512 -> 128² crop, {args.runs} runs each after warm-up (ms)")
    print("| stage | mean (flip, default) | best (flip) | mean (--no-flip) | best (--no-flip) |\n|---|---|---|---|---|")
    s = {f: np.array(split[f]) * 1e3 for f in (True, False)}
    for k, name in enumerate(STAGES):
        print(
            f"| {name} | {s[True][:, k].mean():.1f} | {s[True][:, k].min():.1f} | {s[False][:, k].mean():.1f} | {s[False][:, k].min():.1f} |"
        )
    t = {f: np.array(total[f]) * 1e3 for f in (True, False)}
    print(
        f"| **total (wall, incl. loading and cropping)** | **{t[True].mean():.1f}** | **{t[True].min():.1f}** | "
        f"**{t[False].mean():.1f}** | **{t[False].min():.1f}** |"
    )
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        big = _big_jpeg(Path(tmp))
        rows = []
        for det in ("combined", "frontal"):
            reconstruct.reconstruct(big, model=model, detector=det)  # warm-up
            d = _time(lambda det=det: reconstruct.detect_faces(photo, detector=det, model=model), args.runs)
            w = _time(lambda det=det: reconstruct.reconstruct(photo, model=model, detector=det), args.runs)
            b = _time(lambda det=det: reconstruct.reconstruct(big, model=model, detector=det), max(3, args.runs // 4))
            rows.append((det, d, w, b))
    print("\nby detector, mirror-averaged (ms, mean / best)")
    print(
        "| detector | detection, 512² | photo -> mesh, 512² array | photo -> mesh, 12 MP JPEG file |\n|---|---|---|---|"
    )
    for det, d, w, b in rows:
        print(
            f"| {det} | {d.mean():.1f} / {d.min():.1f} | {w.mean():.1f} / {w.min():.1f} | {b.mean():.1f} / {b.min():.1f} |"
        )


if __name__ == "__main__":
    main()
