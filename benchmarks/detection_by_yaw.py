"""Face detection rate by |yaw|: synthetic renders with known pose, and the real photos.

Two steps:

``python benchmarks/detection_by_yaw.py render DIR [--count 250] [--size 320]``
    renders ``count`` synthetic heads with :class:`monohead.synth.generator.Generator` (seed 2020),
    stratified over five |yaw| bins (0-15, 15-30, 30-45, 45-60, 60-75 degrees; the sign random),
    pitch uniform in +-30 degrees and roll in +-30 degrees, the head 22-45 % of the frame wide
    (photo-like: the face smaller than the frame), and writes ``DIR/NNNN.png`` plus
    ``DIR/truth.json`` (pose and the head mask's bounding box of each render).

``python benchmarks/detection_by_yaw.py measure DIR [--photos FOLDER]``
    runs each detector of :data:`monohead.photo.DETECTORS` on the renders and prints the table of
    detection rates by |yaw| bin (markdown), then, with ``--photos``, whether each real photo's
    face is found. A render counts as found when the largest detection's centre lies inside the
    bounding box of the rendered head (skin and eyes, without hair) and its width is between
    0.25 and 1.6 times that box's width.

``python benchmarks/detection_by_yaw.py small --photos FOLDER``
    small faces in big photos: the astronaut and the real photos 04-12 (frontal), each
    downscaled so that its face (as ``combined`` finds it in the photo) is 40 and 48 pixels
    wide, pasted at a random place (seed 40) on a 1600 x 1200 enlargement of a scikit-image
    scene; prints how many of the 20 faces each detector finds (the first detection's centre
    on the face, its width 0.5-2 times the face's) and its median time.

``python benchmarks/detection_by_yaw.py enlarged DIR [--every 2]``
    the renders of DIR (every ``every``-th) enlarged 4x (bicubic; big photos with no small
    face in them): how often ``combined``'s first face is on the head with and without the
    finer scans for small faces (``monohead.photo._small_faces``), and on how many they ran.

Rendering runs on the CPU (about 1 s per render on a loaded 2-vCPU machine); run it with ``nice``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

BINS = ((0, 15), (15, 30), (30, 45), (45, 60), (60, 75))


def render(out: Path, count: int, size: int, seed: int = 2020) -> None:
    from PIL import Image

    from monohead.synth.generator import Generator

    out.mkdir(parents=True, exist_ok=True)
    gen = Generator(size=size, spp=4)
    rng = np.random.default_rng(seed)
    truth_path = out / "truth.json"
    truth = json.loads(truth_path.read_text()) if truth_path.exists() else {}
    for i in range(count):
        lo, hi = BINS[i % len(BINS)]
        yaw = float(rng.uniform(lo, hi) * rng.choice([-1.0, 1.0]))
        pitch, roll = (float(t) for t in rng.uniform(-30.0, 30.0, 2))
        width = float(rng.uniform(0.22, 0.45))
        offset = [float(t) for t in rng.uniform(-0.2, 0.2, 2) * size]
        name = f"{i:04d}.png"
        if name in truth:
            continue
        p = gen.params(seed, i)
        p["pose"].update(yaw=yaw, pitch=pitch, roll=roll, scale=width * size / 18.5, offset=offset)
        t0 = time.perf_counter()
        s = gen.render(p)
        rows, cols = np.nonzero(s["mask"])
        if len(rows) == 0:
            continue
        Image.fromarray(s["image"]).save(out / name)
        x0, y0 = int(cols.min()), int(rows.min())
        head_box = [x0, y0, int(cols.max()) - x0 + 1, int(rows.max()) - y0 + 1]
        truth[name] = {"yaw": yaw, "pitch": pitch, "roll": roll, "head_box": head_box}
        truth_path.write_text(json.dumps(truth, indent=1))
        print(f"{name} yaw {yaw:+.0f} ({time.perf_counter() - t0:.1f} s)", file=sys.stderr)


def found(faces: list, head_box: list) -> bool:
    """The largest detection is on the rendered head (see the module docstring)."""
    if not faces:
        return False
    x, y, w, h = faces[0]
    hx, hy, hw, hh = head_box
    cx, cy = x + w / 2, y + h / 2
    return hx <= cx <= hx + hw and hy <= cy <= hy + hh and 0.25 * hw <= w <= 1.6 * hw


def measure(folder: Path, photos: Path | None, detectors: tuple[str, ...] | None = None) -> None:
    from PIL import Image

    from monohead import photo as P

    detectors = detectors or P.DETECTORS
    truth = json.loads((folder / "truth.json").read_text())
    names = sorted(truth)
    images = {n: np.asarray(Image.open(folder / n).convert("RGB")) for n in names}
    print(f"{len(names)} renders ({Image.open(folder / names[0]).size[0]} px square)")
    header = "| detector | " + " | ".join(f"{lo}-{hi}°" for lo, hi in BINS) + " | all | ms per photo |"
    print(header + "\n|" + "---|" * (len(BINS) + 3))
    for det in detectors:
        hits = {b: [] for b in BINS}
        t = []
        for n in names:
            t0 = time.perf_counter()
            faces = P.detect_faces(images[n], detector=det)
            t.append(time.perf_counter() - t0)
            a = abs(truth[n]["yaw"])
            b = next(b for b in BINS if b[0] <= a <= b[1])
            hits[b].append(found(faces, truth[n]["head_box"]))
        cells = [f"{100 * np.mean(hits[b]):.0f} % ({sum(hits[b])}/{len(hits[b])})" for b in BINS]
        total = sum(sum(v) for v in hits.values())
        print(f"| {det} | " + " | ".join(cells) + f" | {100 * total / len(names):.0f} % | {1e3 * np.median(t):.1f} |")
    if photos is not None:
        files = sorted(p for p in photos.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
        print("\n| photo | " + " | ".join(detectors) + " |\n|" + "---|" * (len(detectors) + 1))
        for f in files:
            img = P.load_image(f)
            row = []
            for det in detectors:
                faces = P.detect_faces(img, detector=det)
                row.append("found " + str(list(faces[0])) if faces else "**none**")
            print(f"| {f.name[:2]} | " + " | ".join(row) + " |")


def small_faces(photos: Path, detectors: tuple[str, ...] | None = None) -> None:
    from PIL import Image
    from skimage import data

    from monohead import photo as P

    detectors = detectors or ("frontal", "combined")
    sources = [("astronaut", data.astronaut())]
    for f in sorted(p for p in photos.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png")):
        if f.name[:2] in {f"{k:02d}" for k in range(4, 13)}:
            sources.append((f.name[:2], P._read(P.load_image(f), "image", P.WORK_SIDE)[0]))
    scenes = [data.coffee(), data.rocket(), data.chelsea(), data.astronaut()[:, :, ::-1], data.immunohistochemistry()]
    rng = np.random.default_rng(40)
    cases = []
    for face_px in (40, 48):
        for name, img in sources:
            fx, fy, fw, _ = P.detect_faces(img)[0]
            s = face_px / fw
            H, W = img.shape[:2]
            small = np.asarray(Image.fromarray(img).resize((round(W * s), round(H * s)), Image.LANCZOS))
            scene = scenes[len(cases) % len(scenes)]
            canvas = np.asarray(Image.fromarray(scene).resize((1600, 1200), Image.BICUBIC)).copy()
            h, w = small.shape[:2]
            ox, oy = int(rng.integers(0, 1600 - w)), int(rng.integers(0, 1200 - h))
            canvas[oy : oy + h, ox : ox + w] = small
            cases.append((f"{name} {face_px} px", canvas, (ox + fx * s, oy + fy * s, fw * s)))
    print(f"{len(cases)} photos of 1600 x 1200, one 40- or 48-pixel face each")
    print("| detector | found | ms per photo (median) |\n|---|---|---|")
    for det in detectors:
        hits, t = 0, []
        for _, canvas, (x, y, w) in cases:
            t0 = time.perf_counter()
            faces = P.detect_faces(canvas, detector=det)
            t.append(time.perf_counter() - t0)
            if faces:
                fx, fy, fw, fh = faces[0]
                cx, cy = fx + fw / 2, fy + fh / 2
                hits += x <= cx <= x + w and y <= cy <= y + w and 0.5 * w <= fw <= 2 * w
        print(f"| {det} | {hits} / {len(cases)} | {1e3 * np.median(t):.0f} |")


def enlarged(folder: Path, every: int) -> None:
    from PIL import Image

    from monohead import photo as P

    truth = json.loads((folder / "truth.json").read_text())
    names = sorted(truth)[::every]
    net = P.load_default_model()
    scan = P._small_faces
    hits = {"with": 0, "without": 0}
    ran = 0
    try:
        for n in names:
            big = np.asarray(Image.open(folder / n).convert("RGB").resize((1280, 1280), Image.BICUBIC))
            box = [4 * v for v in truth[n]["head_box"]]
            calls: list[int] = []
            P._small_faces = lambda a, d, calls=calls: calls.append(1) or scan(a, d)
            hits["with"] += found(P._detect(big, P.DETECT_SIZE, "combined", net, everywhere=False), box)
            P._small_faces = lambda a, d: []
            hits["without"] += found(P._detect(big, P.DETECT_SIZE, "combined", net, everywhere=False), box)
            ran += bool(calls)
    finally:
        P._small_faces = scan
    print(f"{len(names)} renders enlarged to 1280 x 1280: first face on the head {hits['with']} with the finer")
    print(f"scans, {hits['without']} without; the finer scans ran on {ran}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("render")
    r.add_argument("out", type=Path)
    r.add_argument("--count", type=int, default=250)
    r.add_argument("--size", type=int, default=320)
    m = sub.add_parser("measure")
    m.add_argument("folder", type=Path)
    m.add_argument("--photos", type=Path)
    m.add_argument("--detectors", help="comma-separated subset of monohead.photo.DETECTORS (default: all)")
    sm = sub.add_parser("small")
    sm.add_argument("--photos", type=Path, required=True)
    sm.add_argument(
        "--detectors", help="comma-separated subset of monohead.photo.DETECTORS (default: frontal,combined)"
    )
    en = sub.add_parser("enlarged")
    en.add_argument("folder", type=Path)
    en.add_argument("--every", type=int, default=2)
    args = ap.parse_args()
    if args.cmd == "enlarged":
        enlarged(args.folder, args.every)
    elif args.cmd == "render":
        render(args.out, args.count, args.size)
    elif args.cmd == "small":
        small_faces(args.photos, tuple(args.detectors.split(",")) if args.detectors else None)
    else:
        measure(args.folder, args.photos, tuple(args.detectors.split(",")) if args.detectors else None)


if __name__ == "__main__":
    main()
