"""An independent reference of the WLS energy of conventions.md, built edge by edge with SciPy.

Written from the text of the conventions only (not from monohead's code), so that the tests
compare two separate implementations.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import scipy.sparse.csgraph as csgraph
import scipy.sparse.linalg as spla


def reference_system(normals, W, lam, mask):
    """Return (D, w_e, g, index): residual_e = (D h)_e - g_e with weight w_e per edge."""
    H, Wd = mask.shape
    index = -np.ones((H, Wd), dtype=np.int64)
    index[mask] = np.arange(int(mask.sum()))
    p = -normals[..., 0] / np.where(mask, normals[..., 2], 1.0)
    q = -normals[..., 1] / np.where(mask, normals[..., 2], 1.0)
    w = np.ones((H, Wd)) if W is None else 1.0 / (1.0 + lam * W)
    rows, cols, vals, g, we = [], [], [], [], []
    e = 0
    for r in range(H):
        for c in range(Wd):
            if not mask[r, c]:
                continue
            # horizontal pair (r, c)-(r, c+1)
            if c + 1 < Wd and mask[r, c + 1]:
                rows += [e, e]
                cols += [index[r, c + 1], index[r, c]]
                vals += [1.0, -1.0]
                g.append((p[r, c] + p[r, c + 1]) / 2)
                we.append((w[r, c] + w[r, c + 1]) / 2)
                e += 1
            # vertical pair (r, c)-(r-1, c), one step up (+y)
            if r - 1 >= 0 and mask[r - 1, c]:
                rows += [e, e]
                cols += [index[r - 1, c], index[r, c]]
                vals += [1.0, -1.0]
                g.append((q[r, c] + q[r - 1, c]) / 2)
                we.append((w[r, c] + w[r - 1, c]) / 2)
                e += 1
    D = sp.csr_matrix((vals, (rows, cols)), shape=(e, int(mask.sum())))
    return D, np.array(we), np.array(g), index


def reference_solve(normals, W, lam, mask):
    """Minimiser of the energy with mean 0 per component, NaN outside, via a pinned spsolve."""
    D, we, g, index = reference_system(normals, W, lam, mask)
    n = int(mask.sum())
    A = (D.T @ sp.diags(we) @ D).tocsr()
    b = D.T @ (we * g)
    # components of the mask's 4-neighbour graph (edges of D)
    adj = (abs(D.T) @ abs(D)).tocsr()
    ncomp, labels = csgraph.connected_components(adj, directed=False)
    pins = np.array([np.flatnonzero(labels == k)[0] for k in range(ncomp)])
    keep = np.setdiff1d(np.arange(n), pins)
    x = np.zeros(n)
    if keep.size:
        x[keep] = spla.spsolve(A[keep][:, keep].tocsc(), b[keep])
    for k in range(ncomp):
        sel = labels == k
        x[sel] -= x[sel].mean()
    depth = np.full(mask.shape, np.nan)
    depth[mask] = x
    return depth, A, b


def reference_perspective_slopes(normals, K, mask):
    """Slopes of log z (one column right, one row up) from the pinhole geometry, in OpenCV's frame.

    A surface point of pixel (u, v) = (column, row) is P = z * ray, ray = K^-1 (u, v, 1). Its
    OpenCV normal n (x right, y down, z forward) is monohead's (Nx, -Ny, -Nz). From n . dP = 0:
    d(log z)/du = -n_x / (fx n . ray) and d(log z)/dv = -n_y / (fy n . ray); one row up is -d/dv.
    """
    H, Wd = mask.shape
    Kinv = np.linalg.inv(K)
    v, u = np.mgrid[0:H, 0:Wd].astype(float)
    rays = np.einsum("ij,hwj->hwi", Kinv, np.stack([u, v, np.ones_like(u)], axis=-1))
    n_cv = normals * np.array([1.0, -1.0, -1.0])
    dot = np.where(mask, np.einsum("hwi,hwi->hw", n_cv, rays), -1.0)
    dl_du = -n_cv[..., 0] / (K[0, 0] * dot)
    dl_dv = -n_cv[..., 1] / (K[1, 1] * dot)
    return np.where(mask, dl_du, 0.0), np.where(mask, -dl_dv, 0.0)


def reference_solve_perspective(normals, W, lam, mask, K):
    """Depth along the optical axis minimising the same WLS energy on log z, geometric mean 1 per component."""
    p, q = reference_perspective_slopes(normals, K, mask)
    # The orthographic reference reads p = -Nx/Nz, q = -Ny/Nz: feed it normals with those slopes.
    fake = np.stack([-p, -q, np.ones_like(p)], axis=-1)
    logz, A, b = reference_solve(fake, W, lam, mask)
    return np.exp(logz), A, b


def reference_solve_prior(normals, W, lam, mask, weight, target):
    """Minimiser of sum_e w_e r_e^2 + sum_i weight_i (h_i - target_i)^2 (weight 0 where no prior).

    Components with no prior pixel are singular blocks: pinned at one pixel, then shifted to mean 0.
    """
    D, we, g, index = reference_system(normals, W, lam, mask)
    n = int(mask.sum())
    lam_i = np.where(mask, weight, 0.0)[mask]
    t_i = np.where(mask, target, 0.0)[mask]
    A = (D.T @ sp.diags(we) @ D + sp.diags(lam_i)).tocsr()
    b = D.T @ (we * g) + lam_i * t_i
    adj = (abs(D.T) @ abs(D)).tocsr()
    ncomp, labels = csgraph.connected_components(adj, directed=False)
    free = [k for k in range(ncomp) if not np.any(lam_i[labels == k] > 0)]
    pins = np.array([np.flatnonzero(labels == k)[0] for k in free], dtype=np.int64)
    keep = np.setdiff1d(np.arange(n), pins)
    x = np.zeros(n)
    x[keep] = spla.spsolve(A[keep][:, keep].tocsc(), b[keep])
    for k in free:
        sel = labels == k
        x[sel] -= x[sel].mean()
    depth = np.full(mask.shape, np.nan)
    depth[mask] = x
    return depth
