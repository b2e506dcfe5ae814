"""Measure how the photo pipeline frames a synthetic head (the figures of
``monohead.synth.camera.FRAMING_FIT``, and of ``monohead.framing.TURN_FIT`` and ``REFRAME_FIT``,
the second framing of turned heads).

Run: ``python benchmarks/calibrate_framing.py [--count 40] [--size 256] [--profile LO HI]
[--detector frontal] [--seed 123] [--reframe] [--max-ratio R] [--max-fill F] [--calibrate]``.

Method: version 2 samples of seed ``--seed`` (123) rendered at ``--size`` with the head small in
the frame (its 18.5 cm width = 36 % of the image, centred), near-frontal (yaw clipped to ±25°,
pitch ±12°, roll ±8°), without artefacts; :func:`monohead.reconstruct` with ``--detector``
(``frontal`` cascade by default) finds the face and frames it (:func:`monohead.framing.head_box`).
For each head the script prints the head's width over the crop's side (``ratio``) and where the
framed point (``FACE_CENTRE``) lies from the crop's centre, in crop sides (``dx`` right, ``dy``
down); then the median and spread over the detections, false detections (ratio > 0.7 or the
point more than a fifth of the crop off centre) left out.

``--profile LO HI``: heads turned ``LO <= |yaw| <= HI`` degrees instead (the sample's yaw
mapped into that band, its side kept), framed by ``--detector`` (use ``cascades`` or
``combined``, which find profiles); ``dx`` is then given toward the face's side (positive: the
framed point, at the nose, lies on the side the face turns to), and no detection is left out.

``--reframe``: each head is also reconstructed with ``reframe=True`` (the default of
:func:`monohead.reconstruct`: turned heads framed again from the first pass), and the script
prints the framing of the crop the network finally saw, the estimated yaw, and for both crops
the quality of the network's outputs against the rendered truth: the raw mask's precision and
recall, and the mean angular error of the normals over the pixels of both the cleaned mask and
the true mask (truth sampled at each crop pixel's centre; outside the photo: background).
Each head's turn readings (``rec.turn``: cheap, size, the pose search's yaw, normals' angle, cost
and cost ratio to the frontal start) are printed too; ``--max-ratio R`` sets
``framing.TURN_SEARCH_MAX_COST_RATIO`` for the run (``inf``: no plausibility gate). Each head's
``fill`` (``rec.turn``: its mask's width over its first crop's side) is printed; a head framed
again as too tight (``framing.REFRAME_MAX_FILL``, ``--max-fill F`` for the run, ``inf``: no such
rule) is also reconstructed without that rule, and the summary gives both.

``--calibrate``: the figures of ``TURN_FIT`` and ``REFRAME_FIT``: for each head (every
detection), ``q`` (the face box's width over the first pass's head mask's width), the estimated
yaw, and the crop that would frame it as the training data does (head width ``FRAMING_FIT``
0.397 of the side, the framed point 0.039 sides below the centre) relative to the first pass's
mask: side over the mask's width, centre from the mask's horizontal centre toward the estimated
side and below the mask's top, in mask widths; then medians by estimated ``|yaw|`` band.
"""

from __future__ import annotations

import argparse
import copy

import numpy as np


def render_heads(count: int, size: int, profile: tuple[float, float] | None, seed: int = 123):
    """Yield ``(i, yaw, sample, uv, scale)``: the rendered sample, where its framed point
    projects (photo pixels) and its scale (pixels per cm)."""
    from monohead.synth import camera, scene
    from monohead.synth.generator import Generator

    g = Generator(size, spp=4)
    for i in range(count):
        p = copy.deepcopy(g.params(seed, i))
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
        m = scene.pose_matrix(p["pose"], g.size)
        uv = camera.project((m[:3, :3] @ scene.FACE_CENTRE + m[:3, 3])[None], p["camera"])[0]
        yield i, yaw, s, uv, float(p["pose"]["scale"])


def framing_of(box, uv, scale: float, side: float) -> tuple[float, float, float]:
    """``(ratio, dx, dy)`` of a crop: head width over the side, the framed point from the centre
    (crop sides; ``dx`` times ``side``, the sign of the face's side, or 1)."""
    return (
        18.5 * scale / box.side,
        side * (uv[0] - box.x - box.side / 2) / box.side,
        (uv[1] - box.y - box.side / 2) / box.side,
    )


def truth_in_crop(sample: dict, box, size: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """The rendered normals and mask at each crop pixel's centre (nearest photo pixel)."""
    H, W = sample["mask"].shape
    t = box.x + (np.arange(size) + 0.5) * box.side / size
    u = box.y + (np.arange(size) + 0.5) * box.side / size
    c = np.floor(t).astype(int)
    r = np.floor(u).astype(int)
    ok = (r[:, None] >= 0) & (r[:, None] < H) & (c[None, :] >= 0) & (c[None, :] < W)
    rr, cc = np.clip(r, 0, H - 1)[:, None], np.clip(c, 0, W - 1)[None, :]
    mask = sample["mask"][rr, cc] & ok
    return sample["normals"][rr, cc].astype(np.float64), mask


def quality(rec, sample: dict) -> tuple[float, float, float]:
    """``(precision, recall, mean angular error in degrees)`` of a reconstruction's crop."""
    n_true, m_true = truth_in_crop(sample, rec.box)
    raw = rec.raw_mask
    tp = float((raw & m_true).sum())
    both = rec.mask & m_true
    cos = np.clip((rec.normals[both].astype(np.float64) * n_true[both]).sum(-1), -1.0, 1.0)
    err = float(np.degrees(np.arccos(cos)).mean()) if both.any() else float("nan")
    return tp / max(raw.sum(), 1), tp / max(m_true.sum(), 1), err


def measure(
    count: int,
    size: int,
    profile: tuple[float, float] | None = None,
    detector: str = "frontal",
    seed: int = 123,
    reframe: bool = False,
) -> dict[str, np.ndarray]:
    """Per detected head: ``first`` rows ``(ratio, dx, dy)`` of the first crop, and with
    ``reframe`` also ``final`` (the crop of ``reframe=True``), ``yaw`` rows (true, estimated),
    ``q0``/``q1`` quality rows ``(precision, recall, error)`` of the two."""
    import monohead
    from monohead.photo import NoFaceError, load_default_model

    net = load_default_model()
    import monohead.photo

    out: dict[str, list] = {"first": [], "final": [], "yaw": [], "q0": [], "q1": [], "plain": [], "qp": []}
    for i, yaw, s, uv, scale in render_heads(count, size, profile, seed):
        try:
            rec0 = monohead.reconstruct(s["image"], model=net, detector=detector, reframe=False)
        except NoFaceError:
            print(f"{i}: no face found")
            continue
        side = np.sign(yaw) if profile is not None else 1.0
        row = framing_of(rec0.box, uv, scale, side)
        out["first"].append(row)
        line = f"{i}: yaw {yaw:+.1f} ratio {row[0]:.3f} dx {row[1]:+.3f} dy {row[2]:+.3f}"
        if reframe:
            rec1 = monohead.reconstruct(s["image"], model=net, detector=detector, reframe=True)
            row1 = framing_of(rec1.box, uv, scale, side)
            q0, q1 = quality(rec0, s), quality(rec1, s)
            t = rec1.turn or {}
            plain, qp = row1, q1
            if t.get("reframe") == "tight":  # the same without the rule for tight crops
                limit, monohead.photo.REFRAME_MAX_FILL = monohead.photo.REFRAME_MAX_FILL, np.inf
                try:
                    recp = monohead.reconstruct(s["image"], model=net, detector=detector, reframe=True)
                finally:
                    monohead.photo.REFRAME_MAX_FILL = limit
                plain, qp = framing_of(recp.box, uv, scale, side), quality(recp, s)
            out["plain"].append(plain)
            out["qp"].append(qp)
            out["final"].append(row1)
            out["yaw"].append((yaw, rec1.yaw_estimate))
            out["q0"].append(q0)
            out["q1"].append(q1)
            line += (
                f" | fill {t.get('fill', float('nan')):.3f}"
                f" | est. yaw {rec1.yaw_estimate:+.1f}"
                f"{(' re-framed (' + str(t.get('reframe')) + ')') if rec1.first_box is not None else ''}"
                f" (cheap {t.get('cheap', float('nan')):+.1f} size {t.get('size', float('nan')):.1f} search"
                f" {t.get('search', float('nan')):+.1f} angle {t.get('normals_angle', float('nan')):.1f}"
                f" cost {t.get('cost', float('nan')):.4f} ratio {t.get('cost_ratio', float('nan')):.3f}):"
                f" ratio {row1[0]:.3f} dx {row1[1]:+.3f} dy {row1[2]:+.3f} | P/R/err"
                f" {q0[0]:.3f}/{q0[1]:.3f}/{q0[2]:.1f} -> {q1[0]:.3f}/{q1[1]:.3f}/{q1[2]:.1f}"
            )
            if plain is not row1:
                line += f" (without the tight rule: ratio {plain[0]:.3f}, {qp[0]:.3f}/{qp[1]:.3f}/{qp[2]:.1f})"
        print(line, flush=True)
    return {k: np.array(v) for k, v in out.items()}


def calibrate(count: int, size: int, bands: list[tuple[float, float]], detector: str, seed: int) -> None:
    """Print the per-head figures of ``TURN_FIT`` and ``REFRAME_FIT`` and their medians."""
    import monohead
    from monohead.framing import estimate_yaw
    from monohead.photo import NoFaceError, load_default_model
    from monohead.synth.camera import FRAMING_FIT

    net = load_default_model()
    rows = []
    for band in bands:
        for i, yaw, s, uv, scale in render_heads(count, size, band, seed):
            try:
                rec = monohead.reconstruct(s["image"], model=net, detector=detector, reframe=False)
            except NoFaceError:
                continue
            b, (fx, _, fw, _) = rec.box, rec.face_box
            rows_, cols = np.nonzero(rec.mask)
            px = 128 / b.side
            est = estimate_yaw(rec.normals, rec.mask, ((fx + fw / 2 - b.x) * px, fw * px))
            step = b.side / 128
            mw = (cols.max() - cols.min() + 1) * step
            mc = b.x + (cols.max() + cols.min() + 1) / 2 * step
            top = b.y + rows_.min() * step
            side = 18.5 * scale / FRAMING_FIT["ratio"][0]
            cx = uv[0] - FRAMING_FIT["dx"][0] * side
            cy = uv[1] - FRAMING_FIT["dy"][0] * side
            sgn = 1.0 if est >= 0 else -1.0
            ratio, dx, _ = framing_of(b, uv, scale, np.sign(yaw))
            good = ratio < 0.7 and abs(dx) < 0.3
            q = fw * px / (cols.max() - cols.min() + 1)
            rows.append((yaw, est, q, side / mw, sgn * (cx - mc) / mw, (cy - top) / mw, good))
            print(f"{i}: yaw {yaw:+.1f} est {est:+.1f} q {q:.2f} side {side / mw:.3f} dx {rows[-1][4]:+.3f} "
                  f"dy {rows[-1][5]:.3f}{'' if good else ' (false detection)'}", flush=True)  # fmt: skip
    r = np.array(rows)
    yaw, est = np.abs(r[:, 0]), np.abs(r[:, 1])
    print("q by true |yaw| (TURN_FIT):")
    for lo, hi in ((0, 20), (20, 25.1), (25, 50), (50, 75), (75, 90.1)):
        sel = (yaw >= lo) & (yaw < hi)
        if sel.any():
            print(f"  {lo}-{hi:g}: q median {np.median(r[sel, 2]):.2f} (n {sel.sum()}), "
                  f"sign right {(np.sign(r[sel, 0]) == np.sign(r[sel, 1])).sum()}")  # fmt: skip
    print("crop from the first mask by estimated |yaw| (REFRAME_FIT; false detections left out):")
    for lo, hi in ((25, 45), (45, 60), (60, 90.1)):
        sel = (est >= lo) & (est < hi) & (r[:, 6] > 0)
        if sel.any():
            print(f"  {lo}-{hi:g} (n {sel.sum()}): side {np.median(r[sel, 3]):.3f} dx {np.median(r[sel, 4]):+.3f} "
                  f"dy {np.median(r[sel, 5]):.3f}")  # fmt: skip


def _summary(name: str, r: np.ndarray) -> None:
    print(
        f"{name}: ratio median {np.median(r[:, 0]):.3f}, log-std {np.log(r[:, 0]).std():.3f}; "
        f"dx {r[:, 1].mean():+.3f} +- {r[:, 1].std():.3f}, dy {r[:, 2].mean():+.3f} +- {r[:, 2].std():.3f}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--count", type=int, default=40)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--seed", type=int, default=123)
    ap.add_argument("--profile", type=float, nargs=2, metavar=("LO", "HI"), help="|yaw| band (degrees)")
    ap.add_argument("--detector", default="frontal", help="detector of monohead.photo.detect_faces")
    ap.add_argument("--reframe", action="store_true", help="also the crop of reframe=True, and the quality")
    ap.add_argument("--calibrate", action="store_true", help="the figures of TURN_FIT and REFRAME_FIT")
    ap.add_argument("--max-ratio", type=float, help="framing.TURN_SEARCH_MAX_COST_RATIO for this run (inf: no gate)")
    ap.add_argument("--max-fill", type=float, help="framing.REFRAME_MAX_FILL for this run (inf: no tight rule)")
    args = ap.parse_args()
    if args.max_fill is not None:
        import monohead.photo

        monohead.photo.REFRAME_MAX_FILL = args.max_fill
    if args.max_ratio is not None:
        import monohead.photo

        monohead.photo.TURN_SEARCH_MAX_COST_RATIO = args.max_ratio
    if args.calibrate:
        bands = [(0.0, 25.0), (25.0, 50.0), (50.0, 75.0), (75.0, 90.0)]
        calibrate(args.count, args.size, bands, args.detector, args.seed)
        return
    profile = None if args.profile is None else tuple(args.profile)
    out = measure(args.count, args.size, profile, args.detector, args.seed, args.reframe)
    r = out["first"]
    if len(r) == 0:
        print("no detections")
        return
    ok = (r[:, 0] < 0.7) & (np.abs(r[:, 1]) < 0.2) & (np.abs(r[:, 2]) < 0.25)
    if args.profile is not None:
        ok = np.ones(len(r), bool)
    print(f"{len(r)} detections, {int((~ok).sum())} false left out")
    _summary("first crop" if args.reframe else "crop", r[ok])
    if args.reframe:
        from monohead.framing import REFRAME_MIN_YAW

        _summary("final crop (reframe=True)", out["final"][ok])
        _summary("final crop without the tight rule (REFRAME_MAX_FILL = inf)", out["plain"][ok])
        y = out["yaw"][ok]
        turned = np.abs(y[:, 1]) >= REFRAME_MIN_YAW
        print(f"re-framed {int(turned.sum())} of {len(y)}, estimated sign right on "
              f"{int((np.sign(y[turned, 0]) == np.sign(y[turned, 1])).sum())} of them")  # fmt: skip
        rows = (("first crop", out["q0"]), ("reframe=True, no tight rule", out["qp"]), ("reframe=True", out["q1"]))
        for name, q in ((name, q[ok]) for name, q in rows):
            print(f"{name}: mask precision {100 * q[:, 0].mean():.1f} %, recall {100 * q[:, 1].mean():.1f} %, "
                  f"mean angular error {np.nanmean(q[:, 2]):.2f} deg")  # fmt: skip


if __name__ == "__main__":
    main()
