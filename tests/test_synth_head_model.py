"""monohead.synth.head_model: the ICT-FaceKit reader, the converter, the shipped asset, sampling."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from monohead import cli
from monohead.synth import head_model as hm

UPSTREAM = ("ict-facekit", "FaceXModel-sample")  # under <shared>/data: the real upstream files, when present


@pytest.fixture(scope="module")
def model() -> hm.HeadModel:
    return hm.HeadModel.load()


def _quads(tri: np.ndarray) -> np.ndarray:
    """Undo the converter's fan triangulation of a quad-only region: (0,1,2) then (0,2,3)."""
    half = len(tri) // 2
    a, b = tri[:half], tri[half:]
    assert np.array_equal(a[:, 0], b[:, 0])
    assert np.array_equal(a[:, 2], b[:, 1])
    return np.column_stack([a[:, 0], a[:, 1], a[:, 2], b[:, 2]])


def write_facexmodel_like(
    folder: Path, asset: dict, n_id: int = 2, expressions: tuple = ("jawOpen", "mouthSmile_L")
) -> None:
    """A folder in ICT-FaceKit's FaceXModel format (full topology, 26,719 vertices) rebuilt from
    the shipped asset: the kept regions' polygons and vertices as they were, dummy polygons in
    the regions the asset leaves out, a few identity and expression files."""
    folder.mkdir()
    src = asset["source_vertex"]
    keep = src >= 0
    neutral = np.zeros((hm.ICT_VERTEX_COUNT, 3))
    neutral[src[keep]] = asset["neutral"][keep]
    names = [str(n) for n in asset["region_names"]]
    uv = asset["uv"]
    lines_f: list[str] = []
    lines_vt: list[str] = []
    for name, _v0, _v1, p0, p1 in hm.ICT_REGIONS:
        if name not in names:  # left out of the asset: dummy polygons
            lines_f += ["f 1/1 1/1 1/1"] * (p1 - p0)
            continue
        sel = asset["face_region"] == names.index(name)
        tri, tuv = src[asset["faces"][sel]], asset["corner_uv"][sel]
        if name.startswith("eyeball"):  # triangles and quads: the converter emits size 3 first
            n3 = (p1 - p0) * 2 - len(tri)
            polys = [list(t) for t in tri[:n3]] + [list(q) for q in _quads(tri[n3:])]
            puvs = [list(t) for t in tuv[:n3]] + [list(q) for q in _quads(tuv[n3:])]
        else:
            polys, puvs = [list(q) for q in _quads(tri)], [list(q) for q in _quads(tuv)]
        assert len(polys) == p1 - p0
        for poly, puv in zip(polys, puvs, strict=True):
            corners = []
            for vi, ti in zip(poly, puv, strict=True):
                lines_vt.append(f"vt {uv[ti, 0]:.7g} {uv[ti, 1]:.7g}")
                corners.append(f"{vi + 1}/{len(lines_vt)}")
            lines_f.append("f " + " ".join(corners))
    header = "# ICT FaceKit\n#\n# MIT License (test copy)\n\n"

    def write(name: str, v: np.ndarray, topology: bool) -> None:
        text = [header] + [f"v {a:.7g} {b:.7g} {c:.7g}" for a, b, c in v]
        if topology:
            text += lines_vt + lines_f
        (folder / f"{name}.obj").write_text("\n".join(text) + "\n")

    write("generic_neutral_mesh", neutral, True)
    for k in range(n_id):
        d = np.zeros_like(neutral)
        d[src[keep]] = asset["identity_deltas"][k][keep].astype(np.float64)
        write(f"identity{k:03d}", neutral + d, True)
    ex_names = [str(n) for n in asset["expression_names"]]
    for name in expressions:
        d = np.zeros_like(neutral)
        d[src[keep]] = asset["expression_deltas"][ex_names.index(name)][keep].astype(np.float64)
        write(name, neutral + d, True)
    (folder / "vertex_indices.json").write_text('{"expressions": ["jawOpen", "mouthSmile_L", "eyeBlink_L"]}')


def test_shipped_asset_is_small_and_credited(model):
    assert hm.ASSET_PATH.stat().st_size <= 15 * 2**20
    lic = hm.ASSET_PATH.with_name("LICENSE-ICT-FaceKit.txt").read_text()
    assert "MIT" in lic
    assert "ICT-FaceKit" in lic
    assert "Institute for Creative Technologies" in lic
    assert "ICT-FaceKit" in model.attribution
    assert model.num_identities == 100
    assert model.num_expressions == 53
    assert model.identity_basis.dtype == np.float32


@pytest.mark.parametrize("source", ["upstream", "written"])
def test_converter_roundtrip_through_obj_files(tmp_path, model, source, shared_data):
    """Convert a FaceXModel folder and get the shipped asset back (same topology and numbers).

    ``upstream``: the real ICT-FaceKit sample (identity000/001, jawOpen, mouthSmile_L) from the
    shared data, skipped when absent; ``written``: a folder in its layout written by
    :func:`write_facexmodel_like` (no eyeBlink_L)."""
    with np.load(hm.ASSET_PATH) as z:
        asset = {k: z[k] for k in z.files}
    if source == "upstream":
        folder = shared_data(*UPSTREAM)
    else:
        folder = tmp_path / "FaceXModel"
        write_facexmodel_like(folder, asset)
    out = tmp_path / "asset.npz"
    r = hm.write_asset(folder, out)
    assert r["identities"] == 2
    assert r["expressions"] == 2
    if source == "written":
        assert "eyeBlink_L" in r["missing"]
    assert Path(r["license"]).read_text().count("MIT") >= 1
    with np.load(out) as z:
        new = {k: z[k] for k in z.files}
    for key in ("faces", "face_region", "source_vertex", "region_names"):
        np.testing.assert_array_equal(new[key], asset[key], err_msg=key)
    np.testing.assert_allclose(new["uv"][new["corner_uv"]], asset["uv"][asset["corner_uv"]], atol=1e-6)
    np.testing.assert_allclose(new["neutral"], asset["neutral"], atol=1e-4)
    np.testing.assert_allclose(
        new["identity_deltas"].astype(np.float32), asset["identity_deltas"][:2].astype(np.float32), atol=2e-3
    )
    ex = [str(n) for n in asset["expression_names"]]
    for j, name in enumerate(new["expression_names"]):
        np.testing.assert_allclose(
            new["expression_deltas"][j].astype(np.float32),
            asset["expression_deltas"][ex.index(str(name))].astype(np.float32),
            atol=2e-3,
        )
    # The converted asset loads and makes heads.
    m2 = hm.HeadModel.load(out)
    v = m2.shape([1.0, -0.5], {"jawOpen": 0.5})
    assert v.shape == (m2.num_vertices, 3)
    assert np.isfinite(v).all()


def test_cli_synth_asset(tmp_path, capsys, model):
    with np.load(hm.ASSET_PATH) as z:
        asset = {k: z[k] for k in z.files}
    folder = tmp_path / "FaceXModel"
    write_facexmodel_like(folder, asset, n_id=1, expressions=("jawOpen",))
    out = tmp_path / "a.npz"
    assert cli.main(["synth-asset", str(folder), "-o", str(out), "--json"]) == 0
    assert '"identities": 1' in capsys.readouterr().out
    assert out.is_file()


def test_reader_rejects_other_folders(tmp_path):
    with pytest.raises(ValueError, match="not an ICT-FaceKit FaceXModel folder.*is not a folder"):
        hm.read_facexmodel(tmp_path / "nope")
    with pytest.raises(ValueError, match="has no generic_neutral_mesh.obj"):
        hm.read_facexmodel(tmp_path)
    (tmp_path / "generic_neutral_mesh.obj").write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n")
    with pytest.raises(ValueError, match="has 3 vertices; expected 26719"):
        hm.read_facexmodel(tmp_path)
    with pytest.raises(TypeError, match="folder must be a str"):
        hm.read_facexmodel(3)
    assert cli.main(["synth-asset", str(tmp_path), "-o", str(tmp_path / "x.npz")]) == 2


def test_shape_is_the_linear_model(model):
    rng = np.random.default_rng(0)
    y = rng.standard_normal(5)
    w = np.zeros(model.num_expressions)
    w[model.expression_names.index("jawOpen")] = 0.7
    v = model.shape(y, w)
    ref = (
        model.neutral
        + np.tensordot(y, model.identity_basis[:5], 1)
        + 0.7 * model.expression_basis[model.expression_names.index("jawOpen")]
    )
    np.testing.assert_allclose(v, ref, atol=1e-4)
    np.testing.assert_allclose(model.shape(), model.neutral, atol=0)
    with pytest.raises(ValueError, match="at most 100 coefficients"):
        model.shape(np.zeros(101))
    with pytest.raises(ValueError, match="unknown expression 'smile'"):
        model.shape(expression={"smile": 1.0})


def test_skin_is_closed_and_outward(model):
    """The skin surface (with its cap) is watertight and its normals point outward."""
    import trimesh

    skin = model.faces[model.region_faces(list(hm.SKIN_REGIONS))]
    mesh = trimesh.Trimesh(model.neutral, skin, process=False)
    mesh.merge_vertices()  # the cap's rim repeats the torso's bottom vertices (a crease)
    edges = np.sort(mesh.edges, axis=1)
    _, counts = np.unique(edges, axis=0, return_counts=True)
    assert (counts == 2).all()
    assert mesh.volume > 0  # counter-clockwise seen from outside


def test_gaze_turns_the_eyes(model):
    v0 = model.shape()
    v1 = model.shape(gaze=(0.3, 0.0))
    c0, c1 = model.eye_centres(v0), model.eye_centres(v1)
    np.testing.assert_allclose(c0, c1, atol=1e-3)  # turned about their centres
    eye = model.region_vertices(("eyeball_left",))
    front0 = v0[eye][np.argmax(v0[eye, 2])]
    front1 = v1[eye][np.argmax(v1[eye, 2])]
    assert front1[0] > front0[0] + 0.2  # yaw > 0 turns the cornea toward +x


def test_sample_expression_shares_and_limits(model):
    rng = np.random.default_rng(1)
    draws = [hm.sample_expression(rng, model.expression_names) for _ in range(400)]
    neutral = sum(1 for w, g in draws if not w.any())
    assert 60 <= neutral <= 140  # about a quarter
    jaw = model.expression_names.index("jawOpen")
    assert max(w[jaw] for w, _ in draws) <= 0.6
    assert all(((w >= 0) & (w <= 1)).all() for w, _ in draws)
    y = hm.sample_identity(rng, 100)
    assert y.shape == (100,)
    assert np.abs(y).max() <= 3.0
