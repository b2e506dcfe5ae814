"""The ground-truth checks of the synthetic generator over many samples, with figures.

Run: ``python benchmarks/check_synth.py [--count 32] [--size 128] [--version 3] [--seed 7]
[--max-yaw 75] [--min-yaw 0]``: the generator's yaw range (versions 2 and 3; ``--max-yaw 90
--min-yaw 75``: profiles only).

For each sample: the Embree ray-cast oracle (:func:`monohead.synth.check.raycast_ground_truth`,
with the sample's camera, so perspective from version 2 on) against the rendered N, depth and mask
(pixels framed past the simulated photo's border are outside the mask by design, so the
oracle's mask is cut the same way); N against the finite differences of the depth on interior
pixels; the sample rendered a second time, bit for bit. Prints one line per sample and the
summary: mean and worst of the mean angles, mask pixels that differ (all of them, and those not
on a silhouette), the largest depth difference, the finite-difference angle, and what the
sample holds (lighting setup, occluder, headwear, expression, focal length).
"""

from __future__ import annotations

import argparse

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--count", type=int, default=32)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--version", type=int, default=3)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--spp", type=int, default=4)
    ap.add_argument("--max-yaw", type=float, default=75.0, help="yaw range of versions 2 and 3 (default 75)")
    ap.add_argument("--min-yaw", type=float, default=0.0, help="smallest |yaw| of versions 2 and 3 (default 0)")
    args = ap.parse_args()

    from monohead.synth import artefacts, check
    from monohead.synth.generator import Generator

    g = Generator(args.size, spp=args.spp, version=args.version, max_yaw=args.max_yaw, min_yaw=args.min_yaw)
    angles, diffs, interior, depth, fds, same = [], [], [], [], [], []
    for i in range(args.count):
        s = g.sample(args.seed, i)
        p = s["params"]
        v, f = g.head_mesh(p)
        ref = check.raycast_ground_truth(v, f, g.size, p["camera"])
        if args.version >= 2:
            inside = artefacts.border_inside(p["artefacts"]["border"], g.size)
            ref["mask"] = ref["mask"] & inside
        c = check.compare_ground_truth(s, ref)
        fd = check.finite_difference_agreement(s["normals"], s["depth"], s["mask"], camera=p["camera"])
        again = g.sample(args.seed, i)
        bit = all(
            np.array_equal(again[k], s[k], equal_nan=k == "depth") for k in ("image", "normals", "depth", "W", "mask")
        )
        angles.append(c["mean_angle"])
        diffs.append(c["mask_diff"])
        interior.append(c["mask_diff_interior"])
        depth.append(c["depth_max"])
        fds.append(fd["mean"])
        same.append(bit)
        what = [f"yaw {p['pose']['yaw']:.1f}"]
        if args.version >= 2:
            what += [
                p["lighting"]["setup"],
                f"{p['camera'].get('focal_35mm', 0):.0f}mm",
                p["face"]["expression"],
                f"age {p['face']['age']:.0f}",
            ]
            for key in ("occluder", "headwear", "beard"):
                if p.get(key):
                    kind = p[key].get("kind") or p[key].get("style") if isinstance(p[key], dict) else p[key]
                    what.append(f"{key}:{kind}")
            if p["artefacts"]["border"]:
                what.append("border")
        print(
            f"{i:3d} N {c['mean_angle']:.4f} deg (max {c['max_angle']:.3f}), mask {c['mask_pixels']} px, "
            f"diff {c['mask_diff']} (interior {c['mask_diff_interior']}), depth {c['depth_max']:.4f} px, "
            f"FD {fd['mean']:.2f} deg on {fd['pixels']} px, bit-identical {bit}  {' '.join(what)}",
            flush=True,
        )
    print(
        f"\n{args.count} samples (version {args.version}, {args.size}², seed {args.seed}, "
        f"|yaw| in [{g.min_yaw:g}, {g.max_yaw:g}]): oracle N mean of means "
        f"{np.mean(angles):.4f} deg, worst {np.max(angles):.4f} deg; mask pixels differing {int(np.sum(diffs))} "
        f"({int(np.sum(interior))} not on a silhouette); depth max {np.max(depth):.4f} px; finite differences "
        f"mean {np.mean(fds):.2f} deg, worst {np.max(fds):.2f} deg; bit-identical {int(np.sum(same))}/{len(same)}"
    )


if __name__ == "__main__":
    main()
