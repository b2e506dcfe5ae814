"""Photo -> mesh at 128², split into detection, network, integration and meshing.

Run: ``python -m pytest benchmarks/bench_reconstruct.py --benchmark-enable -p no:cacheprovider``
(pytest-benchmark, whole pipeline), or ``python benchmarks/bench_reconstruct.py [--runs 20]
[--turned-only] [--turned PHOTO]`` for the frontal-and-turned table, then the table of the split
(median and best over the runs, after warm-up, and the median CPU
time), with the default mirror averaging (two network passes) and with ``--no-flip`` (one pass),
for the default detector (``combined``: the frontal cascade, and the network's coarse pass when
the cascade's largest face is not strong) and the old one (``frontal``). Photos: the astronaut
bundled with scikit-image (512 x 512, an array), and the same photo enlarged to a 4000 x 3000
(12 MP) JPEG file read from disk (decoding included). Needs the shipped weights.

A **turned head** beside it: a synthetic render turned +62° (``calibrate_framing.py``'s head
0 of seed 321 in the 50-75° band, 256 x 256, rendered once at start-up, a few seconds), which
``reconstruct`` frames again (its turn read on the detector's coarse pass, then one
mirror-averaged pass on the re-framed crop): photo -> mesh with ``reframe=True`` (the default)
and ``reframe=False``, interleaved with the astronaut's, and its stage split
(``test_turned_photo_to_mesh`` under pytest-benchmark). ``--turned PHOTO``: also time this photo
(e.g. real photo 02 of ``../shared/data/real-photos``), reframe on and off.
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


def _turned_render() -> np.ndarray:
    """The synthetic turned head: ``calibrate_framing.render_heads`` head 0 of seed 321 in the
    50-75° band (yaw +62.1°), ``(256, 256, 3)`` uint8."""
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from calibrate_framing import render_heads

    _, _, sample, _, _ = next(render_heads(1, 256, (50.0, 75.0), seed=321))
    return sample["image"]


def test_turned_photo_to_mesh(benchmark):
    reconstruct, model, _ = _setup()
    image = _turned_render()
    for _ in range(2):
        reconstruct.reconstruct(image, model=model)
    rec = benchmark(reconstruct.reconstruct, image, model=model)
    benchmark.extra_info.update({k: rec.seconds[k] for k in STAGES})
    assert rec.first_box is not None  # framed again


def _big_jpeg(tmp: Path) -> Path:
    from PIL import Image
    from skimage import data

    path = tmp / "astronaut_12mp.jpg"
    big = Image.fromarray(data.astronaut()).resize((3000, 3000), Image.BICUBIC)
    canvas = Image.new("RGB", (4000, 3000), (120, 110, 100))
    canvas.paste(big, (500, 0))
    canvas.save(path, quality=92)
    return path


def _time(fn, runs: int) -> tuple[np.ndarray, np.ndarray]:
    """Wall and CPU (``time.process_time``, all threads) milliseconds of ``runs`` calls."""
    wall, cpu = [], []
    for _ in range(runs):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return np.array(wall) * 1e3, np.array(cpu) * 1e3


def _cell(x: np.ndarray) -> str:
    return f"{np.median(x):.1f} / {x.min():.1f}"


def _turned(reconstruct, model, path: Path, runs: int) -> None:
    """Photo -> mesh of a turned head with reframe on and off (interleaved, after warm-up)."""
    image = reconstruct.load_image(path)
    rec = reconstruct.reconstruct(image, model=model)
    reconstruct.reconstruct(image, model=model, reframe=False)
    times: dict[bool, list[float]] = {True: [], False: []}
    net: dict[bool, list[float]] = {True: [], False: []}
    cpu: dict[bool, list[float]] = {True: [], False: []}
    for _ in range(runs):
        for reframe in (True, False):
            t0, c0 = time.perf_counter(), time.process_time()
            r = reconstruct.reconstruct(image, model=model, reframe=reframe)
            times[reframe].append(time.perf_counter() - t0)
            cpu[reframe].append(time.process_time() - c0)
            net[reframe].append(r.seconds["network"])
    state = "re-framed" if rec.first_box is not None else "not re-framed"
    print(f"turned photo {path.name} ({image.shape[1]}x{image.shape[0]}): estimated yaw {rec.yaw_estimate:+.1f}, "
          f"{state}; {runs} runs each (ms, median / best)")  # fmt: skip
    for reframe in (True, False):
        t, n, c = (np.array(x[reframe]) * 1e3 for x in (times, net, cpu))
        print(f"  reframe={reframe}: photo -> mesh {_cell(t)}, network stage {_cell(n)}, CPU {_cell(c)}")


def _frontal_and_turned(reconstruct, model, photo: np.ndarray, runs: int) -> None:
    """The astronaut and the synthetic turned render, reframe on and off, interleaved."""
    turned = _turned_render()
    photos = {"astronaut 512² (frontal)": photo, "render 256², turned +62°": turned}
    for image in photos.values():
        for reframe in (True, False):
            reconstruct.reconstruct(image, model=model, reframe=reframe)
    wall: dict = {}
    split: dict = {}
    info: dict = {}
    for _ in range(runs):
        for name, image in photos.items():
            for reframe in (True, False):
                t0 = time.perf_counter()
                rec = reconstruct.reconstruct(image, model=model, reframe=reframe)
                wall.setdefault((name, reframe), []).append(time.perf_counter() - t0)
                split.setdefault((name, reframe), []).append([rec.seconds[k] for k in STAGES])
                info[name, reframe] = rec
    print(f"photo -> mesh, mirror-averaged, frontal and turned, {runs} runs each after warm-up (ms, median / best)")
    print("| photo | `reframe` | re-framed | " + " | ".join(STAGES) + " | **total (wall)** |")
    print("|---|---|---|" + "---|" * (len(STAGES) + 1))
    for (name, reframe), w in wall.items():
        rec = info[name, reframe]
        s = np.array(split[name, reframe]) * 1e3
        cells = " | ".join(_cell(s[:, k]) for k in range(len(STAGES)))
        framed = "yes" if rec.first_box is not None else "no"
        if rec.turn is not None:
            framed += f" (yaw {rec.yaw_estimate:+.1f}, read on the {rec.turn.get('pass', '?')} pass)"
        print(f"| {name} | {reframe} | {framed} | {cells} | **{_cell(np.array(w) * 1e3)}** |")
    print()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--turned", type=Path, help="also time this photo of a turned head, reframe on and off")
    ap.add_argument("--turned-only", action="store_true", help="only the frontal and turned table (and --turned)")
    args = ap.parse_args()
    reconstruct, model, photo = _setup()
    _frontal_and_turned(reconstruct, model, photo, args.runs)
    if args.turned is not None:
        _turned(reconstruct, model, args.turned, args.runs)
    if args.turned_only:
        return
    split: dict[bool, list[list[float]]] = {True: [], False: []}
    total: dict[bool, list[float]] = {True: [], False: []}
    cpu: dict[bool, list[float]] = {True: [], False: []}
    for _ in range(args.runs):  # interleaved, so that both see the same machine load
        for flip in (True, False):
            t0, c0 = time.perf_counter(), time.process_time()
            rec = reconstruct.reconstruct(photo, model=model, flip=flip)
            total[flip].append(time.perf_counter() - t0)
            cpu[flip].append(time.process_time() - c0)
            split[flip].append([rec.seconds[k] for k in STAGES])
    print(f"photo -> mesh, astronaut 512x512 -> 128² crop, {args.runs} runs each after warm-up (ms, median / best)")
    print("| stage | mirror-averaged (default) | `--no-flip` |\n|---|---|---|")
    s = {f: np.array(split[f]) * 1e3 for f in (True, False)}
    for k, name in enumerate(STAGES):
        print(f"| {name} | {_cell(s[True][:, k])} | {_cell(s[False][:, k])} |")
    t = {f: np.array(total[f]) * 1e3 for f in (True, False)}
    c = {f: np.array(cpu[f]) * 1e3 for f in (True, False)}
    print(f"| **total (wall, incl. loading and cropping)** | **{_cell(t[True])}** | **{_cell(t[False])}** |")
    print(f"| total CPU time (process_time, both threads) | {_cell(c[True])} | {_cell(c[False])} |")
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        big = _big_jpeg(Path(tmp))
        rows = []
        for det in ("combined", "frontal"):
            reconstruct.reconstruct(big, model=model, detector=det)  # warm-up
            stage: list[float] = []

            def run(det: str = det, stage: list[float] = stage) -> None:
                stage.append(reconstruct.reconstruct(photo, model=model, detector=det).seconds["detection"] * 1e3)

            w, _ = _time(run, args.runs)
            b, bc = _time(
                lambda det=det: reconstruct.reconstruct(big, model=model, detector=det), max(3, args.runs // 4)
            )
            rows.append((det, np.array(stage), w, b, bc))
    print("\nby detector, mirror-averaged (ms, median / best; detection: the stage inside photo -> mesh)")
    print("| detector | detection, 512² | photo -> mesh, 512² array | photo -> mesh, 12 MP JPEG file | 12 MP, CPU |")
    print("|---|---|---|---|---|")
    for det, d, w, b, bc in rows:
        print(f"| {det} | {_cell(d)} | {_cell(w)} | {_cell(b)} | {_cell(bc)} |")


if __name__ == "__main__":
    main()
