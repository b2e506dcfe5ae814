"""Measure the shipped weights on the test fixture and write the model card's ``fixture`` entry.

Run: ``python benchmarks/fixture_bounds.py [--write]`` after new weights are copied into
``python/monohead/model/weights/``.

``tests/test_model.py::test_shipped_weights_state`` runs the shipped network on
``tests/data/model_fixture.npz`` (the five items of the version-2 test folder that its balanced
200 leave out) and checks the mean angular error (degrees) and the mask precision and recall
(percent), one pass and mirror-averaged, against the bounds in the model card's ``fixture``
entry. This script measures them with the same calls and sets the bounds to the measured mean
error + 1° and the measured precision and recall - 2 points, so that a later change in
PyTorch's kernels passes while weights that are clearly worse do not. Without ``--write`` it
prints the entry; with it, it also replaces the card's entry (atomically).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
FIXTURE = REPO / "tests" / "data" / "model_fixture.npz"
SAMPLES = (
    "items 196, 198, 199, 201, 203 of the version-2 test set (seed 2000000000): the five its balanced 200 leave out"
)
MARGIN_DEG = 1.0
MARGIN_POINTS = 2.0


def measure(fixture: Path = FIXTURE) -> dict[str, object]:
    """The card's ``fixture`` entry for the shipped weights (measured figures and bounds)."""
    from monohead import model
    from monohead.evaluate import angular_error_stats, mask_precision_recall

    G = model.load_pretrained()
    entry: dict[str, object] = {"file": str(fixture.relative_to(REPO)), "samples": SAMPLES}
    with np.load(fixture) as z:
        for sfx, flip in (("", False), ("_flip", True)):
            n, _, m = model.predict(G, z["images"], flip=flip)
            stats = angular_error_stats(n, z["normals"], m & z["mask"])
            precision, recall = mask_precision_recall(m, z["mask"])
            entry[f"measured_mean_deg{sfx}"] = float(stats["mean"])
            entry[f"measured_precision{sfx}"] = float(precision)
            entry[f"measured_recall{sfx}"] = float(recall)
            entry[f"max_mean_deg{sfx}"] = round(float(stats["mean"]) + MARGIN_DEG, 2)
            entry[f"min_precision{sfx}"] = round(float(precision) - MARGIN_POINTS, 2)
            entry[f"min_recall{sfx}"] = round(float(recall) - MARGIN_POINTS, 2)
    return entry


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write", action="store_true", help="replace the shipped model card's fixture entry")
    args = ap.parse_args()
    from monohead._env import WEIGHTS_CARD
    from monohead._io import atomic_open

    entry = measure()
    print(json.dumps(entry, indent=1))
    if args.write:
        path = Path(WEIGHTS_CARD)
        card = json.loads(path.read_text())
        card["fixture"] = entry
        with atomic_open(path, "w") as f:
            f.write(json.dumps(card, indent=1) + "\n")
        print(f"-> {path}")


if __name__ == "__main__":
    main()
