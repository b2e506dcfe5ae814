"""Ground-truth checks and cost of generator version 2's body, headwear, facial hair and occluders.

Run: ``python benchmarks/check_synth_v2.py [--size 128] [--count 24] [--seed 31] [--force]
[--cost] [--hash]``. Prints one JSON object:

- ``oracle``: per sample and summarised, the agreement of the rendered N, depth and mask with
  the trimesh + Embree ray-cast oracle (:mod:`monohead.synth.check`, the sample's camera): mean
  and max angle (degrees), pixels in one mask only and how many of those are interior (0: all
  on silhouettes), largest depth difference (pixels);
- ``finite_differences``: N against the normals of the depth's finite differences on
  interior pixels (degrees);
- ``contents``: how many samples had each garment, headwear, facial hair and occluder;
- with ``--force``, every sample gets headwear, facial hair and an occluder (cycling through
  the kinds) on top of its own body;
- with ``--cost``: seconds per sample with the additions and without them (the same
  parameters with ``body``, ``headwear``, ``beard`` and ``occluder`` set to ``None``),
  alternating, wall and process CPU time, after a warm-up of the kernels;
- with ``--hash``: a SHA-256 of every sample's arrays (run twice, in two processes, to see that
  sample i is a pure function of (seed, i)).
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import sys
import time

import numpy as np


def _forced(params: dict, i: int) -> dict:
    from monohead.synth import facial_hair, headwear, occluders

    p = copy.deepcopy(params)
    rng = np.random.default_rng(1000 + i)
    kinds = headwear.KINDS
    while True:
        hw = headwear.sample_headwear_params(rng, 1.0)
        if hw["kind"] == kinds[i % len(kinds)]:
            break
    beard = None
    while beard is None:
        beard = facial_hair.sample_facial_hair_params(rng, "male")
    occ_kinds = occluders.KINDS
    while True:
        occ = occluders.sample_occluder_params(rng, 1.0)
        if occ["kind"] == occ_kinds[i % len(occ_kinds)]:
            break
    p.update(headwear=hw, beard=beard, occluder=occ)
    return p


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--count", type=int, default=24)
    ap.add_argument("--seed", type=int, default=31)
    ap.add_argument("--spp", type=int, default=9)
    ap.add_argument("--force", action="store_true", help="headwear, facial hair and an occluder on every sample")
    ap.add_argument("--cost", action="store_true", help="time samples with and without the additions")
    ap.add_argument("--hash", action="store_true", help="print a hash of every sample's arrays")
    args = ap.parse_args(argv)

    from monohead.synth import check
    from monohead.synth.generator import Generator

    gen = Generator(args.size, spp=args.spp, version=2)
    rows, fds, hashes = [], [], []
    contents: dict[str, dict[str, int]] = {"garment": {}, "headwear": {}, "beard": {}, "occluder": {}}
    for i in range(args.count):
        p = gen.params(args.seed, i)
        if args.force:
            p = _forced(p, i)
        s = gen.render(p)
        ref = check.raycast_sample(gen, p)  # the sample's camera and the border rule
        c = check.compare_ground_truth(s, ref)
        c["mask_diff_off_silhouette"] = c["mask_diff_interior"]
        fd = check.finite_difference_agreement(s["normals"], s["depth"], s["mask"], camera=p["camera"])
        rows.append({"index": i, **c})
        fds.append(fd)
        for key, val in (
            ("garment", p["body"]["garment"] if p.get("body") else None),
            ("headwear", (p.get("headwear") or {}).get("kind")),
            ("beard", (p.get("beard") or {}).get("style")),
            ("occluder", (p.get("occluder") or {}).get("kind")),
        ):
            contents[key][str(val)] = contents[key].get(str(val), 0) + 1
        if args.hash:
            h = hashlib.sha256()
            for k in ("image", "normals", "depth", "W", "mask"):
                h.update(np.ascontiguousarray(s[k]).tobytes())
            hashes.append(h.hexdigest()[:16])
        print(
            f"sample {i}: mean {c['mean_angle']:.4f} deg, mask diffs {c['mask_diff']} "
            f"({c['mask_diff_off_silhouette']} off the silhouettes), "
            f"FD mean {fd['mean']:.2f} deg",
            file=sys.stderr,
        )
    out = {
        "size": args.size,
        "count": args.count,
        "seed": args.seed,
        "forced": args.force,
        "variant": gen.variant,
        "oracle": {
            "mean_angle_max_over_samples": max(r["mean_angle"] for r in rows),
            "mean_angle_mean": float(np.mean([r["mean_angle"] for r in rows])),
            "mask_diff_interior_total": int(sum(r["mask_diff_interior"] for r in rows)),
            "mask_diff_off_silhouette_total": int(sum(r["mask_diff_off_silhouette"] for r in rows)),
            "mask_diff_total": int(sum(r["mask_diff"] for r in rows)),
            "mask_pixels_total": int(sum(r["mask_pixels"] for r in rows)),
            "depth_max": max(r["depth_max"] for r in rows),
            "per_sample": rows,
        },
        "finite_differences": {
            "mean_of_means": float(np.mean([f["mean"] for f in fds if f["pixels"]])),
            "max_of_means": float(max(f["mean"] for f in fds if f["pixels"])),
            "pixels": int(sum(f["pixels"] for f in fds)),
        },
        "contents": contents,
    }
    if args.hash:
        out["hashes"] = hashes
    if args.cost:
        for i in range(4):  # warm-up: kernels of both kinds of scene
            p = gen.params(args.seed, 500 + i)
            gen.render(p)
            gen.render({**p, "body": None, "headwear": None, "beard": None, "occluder": None})
        wall = {"with": [], "without": []}
        cpu = {"with": [], "without": []}
        for i in range(args.count):
            p = gen.params(args.seed, i)
            for key, q in (
                ("with", p),
                ("without", {**p, "body": None, "headwear": None, "beard": None, "occluder": None}),
            ):
                t0, c0 = time.perf_counter(), time.process_time()
                gen.render(q)
                wall[key].append(time.perf_counter() - t0)
                cpu[key].append(time.process_time() - c0)
        out["cost_seconds_per_sample"] = {
            k: {
                "wall_mean": float(np.mean(wall[k])),
                "wall_median": float(np.median(wall[k])),
                "cpu_mean": float(np.mean(cpu[k])),
                "cpu_median": float(np.median(cpu[k])),
            }
            for k in wall
        }
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
