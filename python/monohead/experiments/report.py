"""The Markdown report of :func:`run_experiments`: the tables beside the paper's numbers, the
figures, the timings."""

from __future__ import annotations

import json
import math
from typing import Any

from .settings import ICP_STRIDE, MIN_PIXELS, PAPER_TABLE1, PAPER_TABLE2, STAGES, THETA

__all__ = ["render_report", "sweep_markdown", "table1_markdown", "table2_markdown"]


def _f(x: Any, digits: int = 2, unit: str = "") -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    return f"{x:.{digits}f}{unit}"


def table1_markdown(results: dict[str, Any]) -> str:
    """Table 1 as a Markdown table (paper | ours, all | female | male)."""
    t1 = results["table1"]
    cols = [c for c in ("all", "female", "male") if c in t1]
    names = {"all": f"ours ({t1['all']['images']} heads)",
             "female": f"female-looking ({t1.get('female', {}).get('images', 0)})",
             "male": f"male-looking ({t1.get('male', {}).get('images', 0)})"}  # fmt: skip
    head = "| | paper | " + " | ".join(names[c] for c in cols) + " |"
    sep = "|---|---:|" + "---:|" * len(cols)
    rows = [
        ("Mask precision", "mask_precision", " %"),
        ("Mask recall", "mask_recall", " %"),
        ("Angular error, mean", "mean", "°"),
        ("Angular error, std", "std", "°"),
        ("< 10°", "under_10", " %"),
        ("< 20°", "under_20", " %"),
        ("< 30°", "under_30", " %"),
    ]
    lines = [head, sep]
    for label, key, unit in rows:
        lines.append(
            f"| {label} | {_f(PAPER_TABLE1[key], 2, unit)} | "
            + " | ".join(_f(t1[c].get(key), 2, unit) for c in cols)
            + " |"
        )
    lines.append(
        "| W = \\|∇h\\|, mean abs. error | n/a | " + " | ".join(_f(t1[c].get("w_mae"), 3) for c in cols) + " |"
    )
    return "\n".join(lines)


def sweep_markdown(results: dict[str, Any]) -> str:
    """σ(λ) of both sweeps as a Markdown table."""
    s, o = results["sweep"], results["oracle_sweep"]
    lines = ["| λ | σ, predicted N, W (px) | σ, true N, W (px) |", "|---:|---:|---:|"]
    for k, lam in enumerate(s["lam"]):
        a = _f(s["sigma"][k], 3)
        b = _f(o["sigma"][k], 3) if k < len(o["sigma"]) else "n/a"
        if math.isclose(lam, s["best_lam"]):
            a = f"**{a}**"
        if k < len(o["lam"]) and math.isclose(lam, o["best_lam"]):
            b = f"**{b}**"
        lines.append(f"| {lam:g} | {a} | {b} |")
    return "\n".join(lines)


def table2_markdown(results: dict[str, Any]) -> str:
    """The Table 2 analogue as a Markdown table."""
    lines = [
        "| N, W | integration | heads | mean | std | median | 90 % | ē | σ (eq. 9) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results["table2"]["rows"]:
        lines.append(
            f"| {r['block']} | {r['label']} | {r.get('pairs', r['samples'])} | "
            f"{_f(r.get('mean'), 3)} | {_f(r.get('std'), 3)} | "
            f"{_f(r.get('median'), 3)} | {_f(r.get('p90'), 3)} | {_f(r.get('e_bar'), 3)} | {_f(r.get('sigma'), 3)} |"
        )
    p = PAPER_TABLE2
    lines.append(f"| paper (BU-3DFE, mm) | ours | 100 | {p['mean']:.2f} | {p['std']:.2f} | {p['median']:.2f} | "
                 f"{p['p90']:.2f} | {p['e_bar']:.2f} | {p['sigma']:.2f} |")  # fmt: skip
    return "\n".join(lines)


def _model_lines(m: dict[str, Any]) -> list[str]:
    lines = [f"- Predictor: {m.get('name')}", f"- Cache key: `{m.get('key')}`"]
    card = m.get("card") or {}
    if card:
        tr = card.get("training") or {}
        bits = [
            f"{k} {card[k]}" for k in ("dtype", "parameters", "exported", "monohead_version") if card.get(k) is not None
        ]
        if tr.get("members"):  # a weight average: the training fields describe its last member
            steps = ", ".join(str(x.get("step")) for x in tr["members"])
            bits.append(f"the weight average of {len(tr['members'])} checkpoints (steps {steps} of their runs)")
        elif tr.get("step") is not None:
            bits.append(f"trained {tr.get('step')} steps, {tr.get('images_seen')} images seen")
        if bits:
            lines.append("- Model card: " + "; ".join(str(b) for b in bits))
        lines += [
            "",
            "<details><summary>model card</summary>",
            "",
            "```json",
            json.dumps(card, indent=1, default=str),
            "```",
            "",
            "</details>",
        ]
    src = m.get("source")
    if src:
        lines.append(f"- Weights: {json.dumps(src, default=str)}")
    return lines


def render_report(results: dict[str, Any]) -> str:
    """The Markdown report of :func:`run_experiments`' results."""
    ts = results["test_set"]
    src = ts["source"]
    s, o = results["sweep"], results["oracle_sweep"]
    figs = results["figures"]
    L: list[str] = []
    L += ["# monohead: the paper's experiments", ""]
    L += [f"- Date: {results['date']}",
          f"- Command: `{results['command'] or 'monohead.experiments.run_experiments(...)'}`",
          f"- Versions: {', '.join(f'{k} {v}' for k, v in results['versions'].items())}",
          f"- Total time: {results['seconds']:.1f} s"]  # fmt: skip
    L += _model_lines(results["model"])
    if src.get("kind") == "generated":
        desc = (f"rendered by `monohead.synth` (seed {src['seed']}, disjoint from the training seeds; "
                f"{src['size']}x{src['size']} px, {src['spp']} samples per pixel; samples {ts['ids'][0]} to "
                f"{ts['ids'][-1]} of that seed, chosen for the sexes; generator settings "
                f"`{json.dumps(src.get('settings'), default=str)}`)")  # fmt: skip
    else:
        desc = f"read from {src.get('root') or src.get('kind')}"
    L += [f"- Test set: {ts['count']} heads ({ts['female']} female-looking, {ts['male']} male-looking"
          + (f", {ts['unknown_sex']} without that notion" if ts["unknown_sex"] else "") + f"), {desc}", ""]  # fmt: skip

    L += ["## Table 1: masks and normals (§4.1)", "", table1_markdown(results), ""]
    L += ["Mask precision and recall are pooled over all pixels of all test images. The angular error "
          "is pooled over the pixels inside both the true and the predicted mask of all images "
          f"({results['table1']['all'].get('count', 0)} pixels). The paper's numbers are for its own "
          "test set of 200 synthetic heads.", ""]  # fmt: skip
    if "fig5" in figs:
        L += [f"![Fig. 5: photo, N true and predicted, W true and predicted]({figs['fig5']})", ""]

    L += ["## λ sweep (§4.2, Fig. 8)", ""]
    L += ["For each λ, each test head's predicted normals are integrated with its predicted W "
          "(w = 1 / (1 + λW), `monohead.integrate`) on its predicted mask and compared with the true "
          "depth on the intersection of the two domains: Err = d_GT − d_R, M = median(Err), σ_M = std "
          f"of Err in [M − θ, M + θ] (θ = {THETA:g} px), V = variance of Err in [M − 3σ_M, M + 3σ_M]; "
          "σ = sqrt(Σ V_i / N). The median absorbs the unknown offset of the integrated depth. The "
          "oracle curve does the same with the true N, W and mask (the integrator alone).", ""]  # fmt: skip
    L += [sweep_markdown(results), ""]
    if s["samples"]:
        best_text = f"Best λ: **{s['best_lam']:g}** (σ = {_f(s['best_sigma'], 3)} px) with the predicted maps, "
    else:
        best_text = (
            f"Best λ: none with the predicted maps (no head to integrate; λ = {s['best_lam']:g} is used below), "
        )
    L += [best_text +
          f"{o['best_lam']:g} (σ = {_f(o['best_sigma'], 3)} px) with the true maps; the paper found 0.1. "
          f"Heads used: {len(s['samples'])} (predicted; {results['excluded']['predicted']} left out with fewer than "
          f"{MIN_PIXELS} pixels in both masks), {len(o['samples'])} (true).", ""]  # fmt: skip
    L += [f"![Fig. 8: σ against λ]({figs['fig8']})", ""]
    f6 = results["fig6"]
    if f6:
        L += [f"Fig. 6: test head {f6['id']} ({f6['sex'] or 'sex n/a'}), the one with the median V at "
              f"λ = {f6['lam']:g}: "
              f"M = {_f(f6['median'], 2)} px, σ_M = {_f(f6['sigma_m'], 3)} px, V = {_f(f6['variance'], 3)} px², "
              f"{int(f6['inliers'])} of {int(f6['count'])} pixels within M ± 3σ_M.", ""]  # fmt: skip
        L += [
            "![Fig. 6: (a) ground truth, (b) reconstruction, (c) residuals, (d) error after removing M]"
            f"({figs['fig6']})",
            "",
        ]
    else:
        L += ["Fig. 6: no test head could be integrated (no predicted mask overlaps a true one).", ""]

    L += ["## Table 2 analogue: mesh errors after ICP (§4.3)", ""]
    L += ["Each reconstructed depth (pixels of the test image) becomes a mesh (one vertex per pixel) on the "
          "intersection of its mask and the true mask, is aligned to the true head surface (the mesh of "
          "the true depth over the true mask) by point-to-plane ICP (started from the centroids, fitted "
          f"on every {ICP_STRIDE}th vertex), and is compared with it on all its vertices: mean, std, "
          "median and 90th percentile (our reading of the paper's \"90 % largest\") of the vertices' "
          "distances to the true surface (pooled over all heads), ē and σ of eq. 9 (signed errors along the "
          "true normals at the nearest true vertex; ē "
          "is the mean of the per-head means, σ = sqrt(mean of the per-head variances)). All in pixels. "
          "DCT Poisson and Frankot-Chellappa integrate the full rectangle: the normals outside the mask "
          "are set to (0, 0, 1), and only the mask is kept. Rows 'predicted' use the network's N, W and "
          "mask (the whole pipeline); rows 'true' the true ones (the integrators alone). The paper's row "
          "is on BU-3DFE scans in millimetres: another data set and unit.", ""]  # fmt: skip
    L += [table2_markdown(results), ""]
    failed = sum(int(r.get("icp_failed", 0)) for r in results["table2"]["rows"])
    if failed:
        L += [
            f"ICP failed (too few correspondences) for {failed} reconstruction(s); they are left out, as in the paper.",
            "",
        ]

    if results.get("full_head"):
        from ..evaluate.full_head import markdown as full_head_markdown

        fhr = results["full_head"]
        L += ["## Complete heads (`monohead.fullhead`)", ""]
        L += ["The head model fitted behind each reconstruction and merged with it (README, \"A complete head\"). "
              "Distances (pixels) from the true surface to each reconstruction, under two alignment protocols: "
              "the visible side is one true point per pixel of both masks, the hidden side the points of the "
              "true skin the camera did not see (`monohead.evaluate.full_head`). "
              f"{fhr['heads']} heads, {len(fhr['failed'])} refused, {fhr['converged']} fits converged; fit "
              f"{fhr['seconds']['fit_median'] * 1e3:.0f} ms and merge {fhr['seconds']['merge_median'] * 1e3:.0f} ms "
              "per head (median).", ""]  # fmt: skip
        own = fhr.get("own") or {}
        for title, part in (("aligned by the 2.5D mesh (every reconstruction moved by its ICP)", fhr),
                            ("each aligned on its own (each closed reconstruction by its own ICP to the whole "
                             "true head above the neck; this uses the true hidden surface, so it measures shape, "
                             "not placement)", own)):  # fmt: skip
            if not part.get("summary"):
                continue
            L += [f"Protocol: {title}.", "", full_head_markdown(part), ""]
            ratios = part.get("hidden_ratios") or {}
            if ratios:
                L += [
                    "Hidden side, the complete head's mean error over the mean head's: "
                    + "; ".join(f"{k.replace('/', ' / ')} {v:.3f}" for k, v in sorted(ratios.items()))
                    + " (`mean`: in the same pose as the fit; `mean_fit`: the mean head's own fit).",
                    "",
                ]
    L += ["## Real photos (§4.3, Fig. 7)", ""]
    if results["photos_note"]:
        L += [f"Photos: {results['photos_note']}.", ""]
    for p in results["photos"]:
        if "error" in p:
            L += [f"- {p['photo']}: failed: {p['error']}"]
        else:
            sec = p["seconds"]
            L += [f"### {p['photo']}", "", f"![{p['photo']}]({p['figure']})", "",
                  f"Face box {p['face_box']}, {p['vertices']} vertices (mesh: `{p['mesh']}`), λ = {s['best_lam']:g}; "
                  + ", ".join(f"{k} {v * 1e3:.0f} ms" for k, v in sec.items()), ""]  # fmt: skip
    L += ["## Timings", "", "| stage | seconds | from cache |", "|---|---:|---|"]
    for name in STAGES:
        st = results["stages"].get(name)
        if st:
            L.append(f"| {name} | {st['seconds']:.1f} | {'yes' if st['cached'] else 'no'} |")
    L.append("")
    return "\n".join(L)
