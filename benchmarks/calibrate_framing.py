"""Measure how the photo pipeline frames a synthetic head (the figures of
``monohead.synth.camera.FRAMING_FIT``).

Run: ``python benchmarks/calibrate_framing.py [--count 40] [--size 256] [--profile LO HI]
[--detector frontal]``.

Method: version 2 samples of seed 123 rendered at ``--size`` with the head small in the frame
(its 18.5 cm width = 36 % of the image, centred), near-frontal (yaw clipped to ±25°, pitch
±12°, roll ±8°), without artefacts; :func:`monohead.photo.detect_faces` (frontal cascade) finds
the face and :func:`monohead.framing.head_box` frames it, exactly as :func:`monohead.reconstruct`
does. For each head the script prints the head's width over the crop's side (``ratio``) and
where the framed point (``FACE_CENTRE``) lies from the crop's centre, in crop sides (``dx``
right, ``dy`` down); then the median and spread over the detections, false detections (ratio
> 0.7 or the point more than a fifth of the crop off centre) left out.

``--profile LO HI``: heads turned ``LO <= |yaw| <= HI`` degrees instead (the sample's yaw
mapped into that band, its side kept), framed by ``--detector`` (use ``cascades`` or
``combined``, which find profiles); ``dx`` is then given toward the face's side (positive: the
framed point, at the nose, lies on the side the face turns to), and no detection is left out.
"""

from __future__ import annotations

import argparse
import copy

import numpy as np


def measure(count: int, size: int, profile: tuple[float, float] | None = None, detector: str = "frontal") -> np.ndarray:
    """``(n, 3)`` rows ``(ratio, dx, dy)`` of the heads where a face was detected."""
    from monohead.framing import head_box
    from monohead.photo import detect_faces
    from monohead.synth import camera, scene
    from monohead.synth.generator import Generator

    g = Generator(size, spp=4)
    rows = []
    for i in range(count):
        p = copy.deepcopy(g.params(123, i))
        yaw = float(np.clip(p["pose"]["yaw"], -25, 25))
        if profile is not None:
            u = p["pose"]["yaw"] / 75.0
            yaw = float(np.copysign(profile[0] + abs(u) * (profile[1] - profile[0]), u))
        p["pose"].update(
            yaw=yaw,
            pitch=float(np.clip(p["pose"]["pitch"], -12, 12)),
            roll=float(np.clip(p["pose"]["roll"], -8, 8)),
            scale=0.36 * size / 18.5,
            offset=[0.0, 0.0],
        )
        p["camera"] = camera.sample_camera(np.random.default_rng(i), (size, size), p["pose"]["scale"])
        p["artefacts"].update(border=None, jpeg=0, downscale=1.0, defocus=0.0, motion=0.0)
        s = g.render(p)
        faces = detect_faces(s["image"], detector=detector)
        if not faces:
            print(f"{i}: no face found")
            continue
        b = head_box(tuple(float(t) for t in faces[0][:4]))
        m = scene.pose_matrix(p["pose"], g.size)
        uv = camera.project((m[:3, :3] @ scene.FACE_CENTRE + m[:3, 3])[None], p["camera"])[0]
        side = np.sign(yaw) if profile is not None else 1.0
        row = (
            18.5 * p["pose"]["scale"] / b.side,
            side * (uv[0] - b.x - b.side / 2) / b.side,
            (uv[1] - b.y - b.side / 2) / b.side,
        )
        print(f"{i}: yaw {yaw:+.1f} ratio {row[0]:.3f} dx {row[1]:+.3f} dy {row[2]:+.3f}", flush=True)
        rows.append(row)
    return np.array(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--count", type=int, default=40)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--profile", type=float, nargs=2, metavar=("LO", "HI"), help="|yaw| band (degrees)")
    ap.add_argument("--detector", default="frontal", help="detector of monohead.photo.detect_faces")
    args = ap.parse_args()
    r = measure(args.count, args.size, None if args.profile is None else tuple(args.profile), args.detector)
    if len(r) == 0:
        print("no detections")
        return
    ok = (r[:, 0] < 0.7) & (np.abs(r[:, 1]) < 0.2) & (np.abs(r[:, 2]) < 0.25)
    if args.profile is not None:
        ok = np.ones(len(r), bool)
    good = r[ok]
    print(f"{len(r)} detections, {int((~ok).sum())} false left out")
    print(f"ratio median {np.median(good[:, 0]):.3f}, log-std {np.log(good[:, 0]).std():.3f}")
    print(
        f"dx {good[:, 1].mean():+.3f} +- {good[:, 1].std():.3f}, dy {good[:, 2].mean():+.3f} +- {good[:, 2].std():.3f}"
    )


if __name__ == "__main__":
    main()
