"""Reliability of the integrators: no silent NaN or zero, one behaviour across backends,
thread safety, no side effects, and a property-based fuzz (hypothesis, bounded to seconds).

The longer fuzz is ``tools/fuzz_integrate.py`` (100,000+ calls in subprocesses).
"""

from __future__ import annotations

import threading
import warnings

import numpy as np
import pytest
import torch  # a test dependency ([test] extra): a missing torch fails here instead of skipping
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import monohead
import monohead.torch as mt
from monohead import _validate as v
from monohead.integration import ConvergenceWarning, surfaces
from monohead.integration.generic import integrate_xp


def flat(H=8, W=8):
    n = np.zeros((H, W, 3))
    n[..., 2] = 1.0
    return n


def reference_residual(normals, W, lam, mask, depth):
    """``||b - L h|| / ||b||`` of conventions.md, written edge by edge in long double from the
    text of the conventions (independent of the package); 0/0 counts as 0 and x/0 as inf."""
    f = np.longdouble
    m = np.asarray(mask, bool)
    nz = np.where(m, normals[..., 2], 1.0).astype(f)
    p = np.where(m, -normals[..., 0].astype(f) / nz, 0)
    q = np.where(m, -normals[..., 1].astype(f) / nz, 0)
    w = np.ones(m.shape, f) if W is None else 1 / (1 + f(lam) * np.where(m, W, 0).astype(f))
    h = np.where(m, depth, 0).astype(f)
    b = np.zeros(m.shape, f)
    Lh = np.zeros(m.shape, f)
    # horizontal pairs (r, c)-(r, c+1) and vertical pairs (r, c)-(r-1, c)
    for sl_i, sl_j, g in (
        ((slice(None), slice(None, -1)), (slice(None), slice(1, None)), p),
        ((slice(1, None), slice(None)), (slice(None, -1), slice(None)), q),
    ):
        both = m[sl_i] & m[sl_j]
        we = np.where(both, (w[sl_i] + w[sl_j]) / 2, 0)
        ge = (g[sl_i] + g[sl_j]) / 2
        flux = we * ge  # residual h_j - h_i - g_e
        dh = we * (h[sl_j] - h[sl_i])
        b[sl_j] += flux
        b[sl_i] -= flux
        Lh[sl_j] += dh
        Lh[sl_i] -= dh
    rn = np.sqrt(np.sum((b - Lh) ** 2))
    bn = np.sqrt(np.sum(b**2))
    if bn == 0:
        return 0.0 if rn == 0 else np.inf
    return float(rn / bn)


# --------------------------------------------------------------------------------------------
# 1. What the solver uses is validated, on every backend and in wls_system.


def _tensor(a):
    return None if a is None else torch.from_numpy(np.asarray(a))


def _torch_call(normals, weights=None, lam=0.1, mask=None, **kw):
    return mt.integrate(_tensor(normals), _tensor(weights), lam, _tensor(mask), **kw)


BACKENDS = {
    "mg": lambda *a, **k: monohead.integrate(*a, method="mg", **k),
    "jacobi": lambda *a, **k: monohead.integrate(*a, method="jacobi", **k),
    "direct": lambda *a, **k: monohead.integrate(*a, method="direct", **k),
    "wls_system": lambda *a, **k: monohead.wls_system(*a, **k),
    "numpy": lambda *a, **k: integrate_xp(*a, **k),
    "torch": _torch_call,
}


def _issue_cases():
    """The reproducers of the issue and their neighbours: (normals, weights, lam, match)."""
    cases = []
    n = flat(4, 4)
    n[1, 1] = [1, 0, 1e-310]
    cases.append((n, None, 0.1, r"normals must have 1e-100 <= Nz <= 1e100 inside the mask .* got 1 pixel\(s\)"))
    g = flat()
    g[:, :4] = [1, 0, 1e-160]
    cases.append((g, None, 0.1, r"normals must have 1e-100 <= Nz <= 1e100 .* got 32 pixel\(s\)"))
    g = flat()
    g[:, :2] = [1, 0, 1e-9]
    cases.append((g, None, 0.1, r"normals too grazing: \|Nx/Nz\| or \|Ny/Nz\| > 1e8 at 16 pixel\(s\)"))
    g = flat()
    g[2, 2] = [1e200, 0, 1e-50]
    cases.append((g, None, 0.1, r"normals too grazing: .* at 1 pixel\(s\)"))
    r = flat()
    r[..., 0] = 0.5
    cases.append(
        (r, np.full((8, 8), 1e300), 0.1, r"lam \* weights must be <= 1e12 inside the mask .* got 64 pixel\(s\)")
    )
    W = np.zeros((8, 8))
    W[0, :3] = 1e200
    cases.append((r, W, 1e200, r"lam \* weights must be <= 1e12 .* got 3 pixel\(s\) above \(largest inf"))
    return cases


@pytest.mark.parametrize("backend", list(BACKENDS))
@pytest.mark.parametrize("case", range(6))
def test_values_the_solver_derives_are_validated_on_every_backend(backend, case):
    normals, weights, lam, match = _issue_cases()[case]
    with pytest.raises(ValueError, match=match):
        BACKENDS[backend](normals, weights, lam)


@pytest.mark.parametrize(
    ("kw", "exc", "match"),
    [
        ({"maxiter": 2**31}, ValueError, r"maxiter must be <= 2147483647; got 2147483648"),
        ({"maxiter": 0}, ValueError, r"maxiter must be >= 1; got 0"),
        ({"maxiter": 3.0}, TypeError, r"maxiter must be a positive integer or None; got float"),
        (
            {"lam": 10**400},
            ValueError,
            r"lam must be a finite number >= 0; got 1000.*\(401 digits\) \(too large for a float\)",
        ),
        ({"lam": float("nan")}, ValueError, r"lam must be a finite number >= 0; got nan"),
        ({"lam": "0.1"}, TypeError, r"lam must be a real number; got str"),
        ({"tol": 10**400}, ValueError, r"tol must be in \(0, 1\); got .*too large for a float"),
        ({"tol": 0.0}, ValueError, r"tol must be in \(0, 1\); got 0.0"),
    ],
)
@pytest.mark.parametrize("backend", ["mg", "direct", "numpy", "torch"])
def test_scalars_are_checked_before_any_conversion(backend, kw, exc, match):
    with pytest.raises(exc, match=match):
        BACKENDS[backend](flat(), None, **kw)


@pytest.mark.parametrize("backend", ["mg", "numpy", "torch"])
def test_batch_weights_of_the_wrong_shape_or_kind(backend):
    n = np.broadcast_to(flat(6, 5), (3, 6, 5, 3)).copy()
    with pytest.raises(
        ValueError, match=r"weights must have shape \(B, H, W\) = \(3, 6, 5\) or \(H, W\) = \(6, 5\) shared"
    ):
        BACKENDS[backend](n, np.zeros((5, 6)))
    if backend != "torch":  # torch takes tensors only
        with pytest.raises(TypeError, match=r"weights must be a numeric array; got list"):
            BACKENDS[backend](n, [[1.0, 2.0], [3.0]])
        depth = BACKENDS[backend](n, np.zeros((6, 5)).tolist())
        assert depth.shape == (3, 6, 5)


def test_x0_is_validated():
    x0 = np.zeros((8, 8))
    x0[3, 3] = 1e200
    with pytest.raises(ValueError, match=r"x0 must satisfy \|x0\| <= 1e100 inside the mask; got 1 value"):
        monohead.integrate(flat(), x0=x0)
    with pytest.raises(ValueError, match=r"x0 must be finite inside the mask; got 1 NaN or inf"):
        integrate_xp(flat(), x0=np.where(np.eye(8, dtype=bool)[::-1] & (np.arange(8) == 2), np.inf, 0.0))


# --------------------------------------------------------------------------------------------
# 2. Honest results: tiny but valid inputs give the right (tiny) answer, never a silent zero.


@pytest.mark.parametrize("backend", ["mg", "jacobi", "direct", "numpy", "torch"])
@pytest.mark.parametrize("scale", [1e-300, 1e-200, 1e-30])
def test_tiny_slopes_give_the_scaled_solution(backend, scale):
    s = surfaces.sphere_cap((24, 24), 10.0)
    p = -s.normals[..., 0] / np.where(s.mask, s.normals[..., 2], 1)
    q = -s.normals[..., 1] / np.where(s.mask, s.normals[..., 2], 1)
    tiny = np.stack([-p * scale, -q * scale, np.ones_like(p)], axis=-1)
    tiny[~s.mask] = 0
    unit = np.stack([-p, -q, np.ones_like(p)], axis=-1)
    unit[~s.mask] = 0
    kw = {"tol": 1e-10} if backend != "direct" else {}
    ref = monohead.integrate(unit, s.W, 0.1, s.mask, method="direct")
    out = BACKENDS[backend](tiny, s.W, 0.1, s.mask, **kw)
    out = out.detach().numpy() if hasattr(out, "detach") else out
    assert np.isfinite(out[s.mask]).all()
    assert np.abs(out[s.mask]).max() > 0
    np.testing.assert_allclose(out[s.mask] / scale, ref[s.mask], rtol=1e-6, atol=1e-6 * np.abs(ref[s.mask]).max())


@pytest.mark.parametrize("method", ["mg", "jacobi", "direct"])
def test_small_weights_and_large_lam_within_the_limit(method):
    s = surfaces.sphere_cap((24, 24), 10.0)
    kw = {"tol": 1e-9} if method != "direct" else {}
    for lam, W in [(1e12, np.ones_like(s.W)), (1.0, np.where(np.arange(24) % 2, 1e12, 0.0) * np.ones((24, 1)))]:
        depth, info = monohead.integrate(s.normals, W, lam, s.mask, method=method, return_info=True, **kw)
        assert np.isfinite(depth[s.mask]).all()
        assert info.converged
        assert info.residual <= (kw.get("tol", 1e-6))
        assert reference_residual(s.normals, W, lam, s.mask, depth) < 1e-5


def test_converged_is_the_true_residual_against_tol():
    s = surfaces.head(32)
    with pytest.warns(ConvergenceWarning, match=r"mg solve stopped after 1 iterations at relative residual"):
        depth, info = monohead.integrate(s.normals, s.W, 0.1, s.mask, maxiter=1, tol=1e-12, return_info=True)
    assert not info.converged
    assert info.residual > 1e-12
    assert info.residual == pytest.approx(reference_residual(s.normals, s.W, 0.1, s.mask, depth), rel=1e-6)
    # "direct" compares its residual with tol too
    depth, info = monohead.integrate(s.normals, s.W, 0.1, s.mask, method="direct", return_info=True)
    assert info.converged == (info.residual <= 1e-6)
    with pytest.warns(ConvergenceWarning, match=r"direct solve reached relative residual .* > tol=1e-18"):
        _, info = monohead.integrate(s.normals, s.W, 0.1, s.mask, method="direct", tol=1e-18, return_info=True)
    assert not info.converged


def test_torch_gradients_are_finite_for_every_accepted_forward():
    rng = np.random.default_rng(5)
    n = np.concatenate([rng.normal(size=(8, 8, 2)), np.ones((8, 8, 1))], axis=-1)
    n[2, 2] = [1e-92, 1e-92, 1e-99]  # accepted: Nz >= 1e-100, slope 1e7
    n[5, 5] = [1e100, 0, 1e100]  # accepted: Nz <= 1e100, slope 1
    n[6, 1] = [1e-320, 0, 1.0]  # a subnormal slope
    W = rng.uniform(0, 1e11, size=(8, 8))
    t = torch.tensor(n, requires_grad=True)
    Wt = torch.tensor(W, requires_grad=True)
    depth = mt.integrate(t, Wt, 10.0)
    assert torch.isfinite(depth).all()
    (depth * torch.arange(64.0, dtype=torch.float64).reshape(8, 8)).sum().backward()
    assert torch.isfinite(t.grad).all()
    assert torch.isfinite(Wt.grad).all()


# --------------------------------------------------------------------------------------------
# 3. One behaviour across backends: values outside the mask are ignored everywhere.


def test_garbage_outside_the_mask_is_ignored_by_every_backend():
    rng = np.random.default_rng(3)
    n = np.concatenate([rng.normal(scale=0.3, size=(9, 10, 2)), np.ones((9, 10, 1))], axis=-1)
    W = rng.uniform(0, 2, size=(9, 10))
    mask = np.ones((9, 10), bool)
    holes = [(3, 3), (5, 7), (0, 0)]
    for (r, c), (nv, wv) in zip(holes, [(np.nan, np.nan), (np.inf, -5.0), (-1.0, -10.0)], strict=True):
        mask[r, c] = False
        n[r, c] = nv
        W[r, c] = wv
    clean_n, clean_W = n.copy(), W.copy()
    clean_n[~mask] = [0, 0, 1]
    clean_W[~mask] = 0
    ref = monohead.integrate(clean_n, clean_W, 0.1, mask, method="direct")
    for name in ["mg", "jacobi", "direct", "numpy", "torch"]:
        out = BACKENDS[name](n, W, 0.1, mask, tol=1e-10) if name != "direct" else BACKENDS[name](n, W, 0.1, mask)
        out = out.detach().numpy() if hasattr(out, "detach") else out
        np.testing.assert_allclose(out[mask], ref[mask], atol=1e-7, err_msg=name)
        assert np.isnan(out[~mask]).all()
    L, b = monohead.wls_system(n, W, 0.1, mask)
    L2, b2 = monohead.wls_system(clean_n, clean_W, 0.1, mask)
    assert np.isfinite(L.data).all()
    assert np.isfinite(b).all()
    np.testing.assert_array_equal(b, b2)
    assert (L != L2).nnz == 0


# --------------------------------------------------------------------------------------------
# 4. Thread safety: one Integrator shared by 8 threads gives the serial result, bit for bit.


@pytest.mark.parametrize("method", ["mg", "jacobi", "direct"])
def test_shared_integrator_from_8_threads_is_bit_for_bit_serial(method):
    s = surfaces.head(64)
    rng = np.random.default_rng(8)
    maps = []
    for _ in range(16):
        n = s.normals.copy()
        n[..., :2] += 0.05 * rng.standard_normal(n.shape[:2] + (2,))
        maps.append(n)
    solver = monohead.Integrator(s.mask, s.W, 0.1, method=method)
    serial = [solver.solve(n, return_info=True) for n in maps]
    out: list = [None] * len(maps)
    start = threading.Barrier(8)

    def work(t):
        start.wait()
        for k in range(t, len(maps), 8):
            out[k] = solver.solve(maps[k], return_info=True)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for (d0, i0), (d1, i1) in zip(serial, out, strict=True):
        np.testing.assert_array_equal(d0, d1)
        assert (i0.iterations, i0.residual) == (i1.iterations, i1.residual)


# --------------------------------------------------------------------------------------------
# 5. No side effects: inputs keep their values and flags.


def _snapshot(*arrays):
    return [(a.copy(), a.flags.writeable, a.flags.c_contiguous) for a in arrays]


@pytest.mark.parametrize("backend", ["mg", "direct", "wls_system", "numpy", "integrator"])
def test_inputs_are_not_modified(backend):
    s = surfaces.sphere_cap((16, 16), 7.0)
    n = np.asfortranarray(s.normals)
    W = s.W.copy()
    W[~s.mask] = np.nan
    mask = s.mask.copy()
    x0 = np.zeros(mask.shape)
    before = _snapshot(n, W, mask, x0)
    if backend == "integrator":
        monohead.Integrator(mask, W, 0.1).solve(n, x0=x0)
    elif backend == "wls_system":
        monohead.wls_system(n, W, 0.1, mask)
    else:
        BACKENDS[backend](n, W, 0.1, mask, x0=x0) if backend != "direct" else BACKENDS[backend](n, W, 0.1, mask)
    for (a0, wr, cc), a in zip(before, (n, W, mask, x0), strict=True):
        np.testing.assert_array_equal(a, a0)
        assert (a.flags.writeable, a.flags.c_contiguous) == (wr, cc)
    mask[0, 0] = not mask[0, 0]  # still writeable


def test_torch_inputs_are_not_modified():
    s = surfaces.sphere_cap((16, 16), 7.0)
    n = torch.tensor(s.normals, requires_grad=True)
    W = torch.tensor(s.W)
    m = torch.tensor(s.mask)
    copies = [n.detach().clone(), W.clone(), m.clone()]
    mt.integrate(n, W, 0.1, m).nansum().backward()
    for a, c in zip((n.detach(), W, m), copies, strict=True):
        assert torch.equal(a, c)
    assert n.requires_grad
    assert not W.requires_grad


# --------------------------------------------------------------------------------------------
# 8. Property-based fuzz (bounded): every call either raises a ValueError/TypeError that names
# its argument, or returns finite depth whose independent residual agrees with the report.

ARGS = ("normals", "weights", "mask", "lam", "tol", "maxiter", "x0", "lam * weights")
EXTREMES = [
    0.0,
    -0.0,
    1.0,
    -1.0,
    1e-320,
    1e-300,
    1e-160,
    1e-100,
    1e-9,
    1e8,
    1e100,
    1e160,
    1e300,
    np.inf,
    -np.inf,
    np.nan,
]


@st.composite
def integration_inputs(draw):
    H = draw(st.integers(1, 7))
    W = draw(st.integers(1, 7))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    n = np.concatenate(
        [rng.normal(scale=draw(st.sampled_from([0.01, 0.5, 3.0])), size=(H, W, 2)), np.ones((H, W, 1))], -1
    )
    for _ in range(draw(st.integers(0, 3))):
        n[rng.integers(H), rng.integers(W), rng.integers(3)] = draw(st.sampled_from(EXTREMES))
    if draw(st.booleans()):
        with np.errstate(over="ignore", under="ignore"):
            n *= draw(st.sampled_from([1e-200, 1e-50, 1e50, 1e200]))
    mask = rng.random((H, W)) < draw(st.sampled_from([0.5, 0.9, 1.0]))
    weights = None
    if draw(st.booleans()):
        weights = rng.uniform(0, 10, size=(H, W)) * draw(st.sampled_from([1.0, 1e6, 1e12, 1e300]))
        for _ in range(draw(st.integers(0, 2))):
            weights[rng.integers(H), rng.integers(W)] = draw(st.sampled_from(EXTREMES))
    lam = draw(st.sampled_from([0.0, 0.1, 1.0, 1e10, 1e300]))
    tol = draw(st.sampled_from([1e-3, 1e-6, 1e-10]))
    return n, weights, lam, mask, tol


def _solve_with_info(name, n, weights, lam, mask, tol):
    """``(depth, info)`` of backend ``name`` (info ``None`` for torch, which returns none)."""
    if name == "torch":
        return _torch_call(n, weights, lam, mask, tol=tol), None
    kw = {} if name == "direct" else {"tol": tol}
    return BACKENDS[name](n, weights, lam, mask, return_info=True, **kw)


def _outcome(fn, *args):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            return "ok", fn(*args), caught
        except (ValueError, TypeError) as exc:
            return "rejected", exc, caught


@settings(max_examples=100, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(integration_inputs())
def test_property_every_call_is_rejected_clearly_or_answered_honestly(inputs):
    n, weights, lam, mask, tol = inputs
    results = {}
    for name in ("mg", "direct", "numpy", "torch"):
        results[name] = _outcome(_solve_with_info, name, n, weights, lam, mask, tol)
    kinds = {k: r[0] for k, r in results.items()}
    event(kinds["mg"])
    assert len(set(kinds.values())) == 1, kinds  # every backend accepts, or every one rejects
    if kinds["mg"] == "rejected":
        messages = {k: f"{type(r[1]).__name__}: {r[1]}" for k, r in results.items()}
        assert len(set(messages.values())) == 1, messages  # with the same message
        assert str(results["mg"][1]).startswith(ARGS), messages["mg"]
        return
    m = mask if mask is not None else np.any(n != 0, axis=-1)
    for name, (_, (depth, info), caught) in results.items():
        depth = depth.detach().numpy() if hasattr(depth, "detach") else depth
        assert np.isfinite(depth[m]).all(), name
        assert np.isnan(depth[~m]).all(), name
        warned = any(issubclass(w.category, ConvergenceWarning) for w in caught)
        if info is not None:
            assert info.converged == (info.residual <= (tol if name != "direct" else 1e-6)), (name, info)
            assert warned == (not info.converged), name
            if info.converged:
                res = reference_residual(n, weights, lam, m, depth)
                assert res <= 10 * max(info.residual, 1e-13) + 1e-9, (name, res, info)


def test_limits_are_stated_where_users_read_them():
    doc = monohead.integrate.__doc__
    for text in ("1e-100 <= Nz <= 1e100", "at most 1e8", "lam * W <= 1e12", "[1, 2**31 - 1]", "(0, 1)"):
        assert text in doc, text
    assert v.SLOPE_LIMIT == 1e8
    assert v.LAM_W_LIMIT == 1e12
    assert v.MAXITER_LIMIT == 2**31 - 1


@pytest.mark.parametrize("backend", ["mg", "direct", "wls_system", "numpy", "torch"])
def test_perspective_values_are_validated_too(backend):
    K = np.array([[50.0, 0, 4.0], [0, 50.0, 4.0], [0, 0, 1]])
    n = flat()
    n[3, 3] = [1.0, 0.0, 1e-9 + 1.0 / 50 * (3 - 4.0)]  # d = 1e-9: log-depth slope 2e7 is fine
    n[3, 3, 2] = 1e-12 + (3 - 4.0) / 50  # d = 1e-12: slope 2e10, too grazing
    with pytest.raises(ValueError, match=r"normals too grazing: log-depth slope .* > 1e8 at 1 pixel\(s\)"):
        BACKENDS[backend](n, None, 0.1, K=K)


@pytest.mark.parametrize("backend", ["mg", "numpy", "torch"])
def test_perspective_depth_beyond_float64_is_rejected_not_returned(backend):
    K = np.array([[1.0, 0, 0.0], [0, 1.0, 0.0], [0, 0, 1]])
    n = np.zeros((4, 200, 3))
    n[..., 0] = 1e3 * (1.0 + 0 * np.arange(200))  # log-depth slope ~ 1e3 per pixel over 200 pixels
    n[..., 2] = 1.0 + n[..., 0] * np.arange(200)  # d = 1 everywhere
    with pytest.raises(ValueError, match=r"normals imply depth ratios beyond float64 under K"):
        BACKENDS[backend](n, None, 0.1, K=K)


# --------------------------------------------------------------------------------------------
# 6. All-or-nothing CLI: one-line exit-2 messages naming the file, no output on failure.


def _cli(argv, capsys):
    from monohead import cli

    code = cli.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def _bomb_png(path, side=20000):
    """A small PNG that declares side x side pixels (a decompression bomb)."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    hdr = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * (side * 3 + 1) * 4, 9)  # the first rows only
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", hdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    return path


def test_cli_decompression_bombs_and_non_images_exit_2_with_nothing_written(tmp_path, capsys):
    bomb = _bomb_png(tmp_path / "bomb.png")
    out = tmp_path / "new_folder"
    code, _, err = _cli(["reconstruct", str(bomb), "-o", str(out)], capsys)
    assert code == 2
    assert err.count("\n") == 1
    assert "bomb.png" in err
    assert "decompression bomb" in err
    assert not out.exists()  # no empty folder left behind
    text = tmp_path / "notes.jpg"
    text.write_text("not an image")
    code, _, err = _cli(["reconstruct", str(text), "-o", str(out)], capsys)
    assert code == 2
    assert err.count("\n") == 1
    assert "notes.jpg is not a readable image" in err
    assert not out.exists()
    bini = tmp_path / "bini"
    bini.mkdir()
    _bomb_png(bini / "normal_map.png")
    code, _, err = _cli(["integrate", str(bini), "-o", str(tmp_path / "d.npy")], capsys)
    assert code == 2
    assert err.count("\n") == 1
    assert "decompression bomb" in err
    assert not (tmp_path / "d.npy").exists()


def test_cli_text_and_pickled_npy_are_named(tmp_path, capsys):
    txt = tmp_path / "normals.npy"
    txt.write_text("0 0 1\n0 0 1\n")
    code, _, err = _cli(["integrate", str(txt), "-o", str(tmp_path / "d.npy")], capsys)
    assert code == 2
    assert err.count("\n") == 1
    assert f"cannot read {txt}: not a .npy file (it holds text; write it with numpy.save)" in err
    obj = tmp_path / "obj.npy"
    np.save(obj, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    code, _, err = _cli(["integrate", str(obj), "-o", str(tmp_path / "d.npy")], capsys)
    assert code == 2
    assert err.count("\n") == 1
    assert "holds a pickled (object) array" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["normals.npy", "obj.npy"]


def test_cli_integrate_writes_depth_and_mesh_or_neither(tmp_path, capsys):
    depth = tmp_path / "d.npy"
    for bad in (str(tmp_path / "m.xyz"), str(tmp_path / "no" / "m.ply"), str(tmp_path)):
        code, _, err = _cli(["integrate", "--example", "-o", str(depth), "--mesh", bad], capsys)
        assert code == 2
        assert err.count("\n") == 1
        assert "--mesh" in err
        assert not depth.exists()
    code, _, err = _cli(["integrate", "--example", "-o", str(tmp_path)], capsys)
    assert code == 2
    assert "is a folder" in err
    code, _, _ = _cli(["integrate", "--example", "-o", str(depth), "--mesh", str(tmp_path / "m.ply")], capsys)
    assert code == 0
    assert depth.exists()
    assert (tmp_path / "m.ply").exists()


def test_cli_unwritable_destination_names_the_file_not_a_temporary(tmp_path, capsys, monkeypatch):
    import errno
    import os

    real_open = os.open

    def read_only(path, flags, *a):
        if flags & os.O_CREAT:
            raise OSError(errno.EROFS, "Read-only file system", path)
        return real_open(path, flags, *a)

    monkeypatch.setattr(os, "open", read_only)
    code, _, err = _cli(["integrate", "--example", "-o", str(tmp_path / "d.npy")], capsys)
    monkeypatch.undo()
    assert code == 2
    assert err.count("\n") == 1
    assert f"{tmp_path / 'd.npy'}: cannot write: Read-only file system" in err
    assert ".tmp" not in err
    assert not list(tmp_path.iterdir())


def test_cli_output_that_is_a_file(tmp_path, capsys):
    f = tmp_path / "file"
    f.write_text("x")
    for argv, what in [
        (["train", "--toy", "4", "--out", str(f)], "--out must be a run folder"),
        (["synth", "--count", "1", "--out", str(f)], "exists and is not a folder"),
        (["experiments", "--toy", "4", "--out", str(f)], "output must be a folder"),
    ]:
        code, _, err = _cli(argv, capsys)
        assert code == 2
        assert err.count("\n") == 1
        assert what in err
        assert f"{f}" in err


def test_cli_json_is_alone_on_stdout_even_when_a_library_prints(tmp_path, capfd, monkeypatch):
    import json
    import os

    import monohead
    from monohead import cli

    real = monohead.integrate

    def noisy(*a, **k):
        os.write(1, b"renderer log line written by C code\n")
        print("a Python print in a library")  # noqa: T201  # the library that prints is what this test imitates
        return real(*a, **k)

    monkeypatch.setattr(monohead, "integrate", noisy)
    assert cli.main(["integrate", "--example", "-o", str(tmp_path / "d.npy"), "--json"]) == 0
    out, err = capfd.readouterr()
    assert out.count("\n") == 1, (out, err)
    assert json.loads(out)["output"] == str(tmp_path / "d.npy")  # the only thing on stdout
    assert "renderer log line" in err
    assert "a Python print" in err


# --------------------------------------------------------------------------------------------
# 7. Resume granularity: a killed `synth` redoes at most the sample it was rendering.


def test_synth_killed_mid_shard_resumes_sample_by_sample(tmp_path, monkeypatch):
    from monohead.synth import SyntheticHeads
    from monohead.synth import dataset as ds

    real = ds._generator
    calls = {"n": 0, "kill_at": 3}

    class Spy:
        def __init__(self, gen):
            self.gen = gen

        def sample(self, seed, i):
            calls["n"] += 1
            if calls["n"] == calls["kill_at"]:
                raise KeyboardInterrupt  # the process is stopped while rendering this sample
            return self.gen.sample(seed, i)

    monkeypatch.setattr(ds, "_generator", lambda settings: Spy(real(settings)))
    kw = {"count": 3, "seed": 5, "size": 16, "spp": 1, "shard_size": 3, "preview": False}
    with pytest.raises(KeyboardInterrupt):
        ds.generate(tmp_path / "a", **kw)
    assert len(list((tmp_path / "a" / "shards" / ".shard-00000.partial").glob("sample-*.npz"))) == 2
    calls.update(n=0, kill_at=-1)
    r = ds.generate(tmp_path / "a", **kw)
    assert calls["n"] == 1
    assert r["generated"] == 1
    assert r["skipped"] == 2
    assert not (tmp_path / "a" / "shards" / ".shard-00000.partial").exists()
    a = SyntheticHeads(tmp_path / "a")
    again = ds.regenerate(tmp_path / "a", 1)  # a resumed sample equals one made again, bit for bit
    for key in ("image", "normals", "depth", "W", "mask"):
        np.testing.assert_array_equal(a[1][key], again[key])
    assert a[1]["params"] == again["params"]
