// The staggered-grid weighted least-squares system of normal integration (paper eq. 7-8,
// conventions.md).  Plain C++17, no Python types.
//
// For every pair of 4-neighbour pixels both in the mask:
//   horizontal (r,c)-(r,c+1): residual h[r,c+1] - h[r,c] - (p[r,c] + p[r,c+1]) / 2,
//                             weight (w[r,c] + w[r,c+1]) / 2;
//   vertical (r,c)-(r-1,c):   residual h[r-1,c] - h[r,c] - (q[r,c] + q[r-1,c]) / 2,
//                             weight (w[r,c] + w[r-1,c]) / 2;
// with p = -Nx/Nz, q = -Ny/Nz and w = 1 / (1 + lam * W).  The normal equations L h = b have
// L = sum_e w_e (e_j - e_i)(e_j - e_i)^T, a weighted graph Laplacian, and
// b = sum_e w_e g_e (e_j - e_i).
//
// Storage on the padded grid (masked_grid.hpp): eE[i] is the weight of the edge i -- i+1
// (rightwards), eN[i] the weight of the edge i -- i-S (upwards); zero where either end is
// outside the mask.
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

#include "masked_grid.hpp"
#include "parallel.hpp"
#include "pool.hpp"

namespace monohead {

struct EdgeWeights {
    pvector<double> eE, eN;  // large: from the block pool (pool.hpp)
};

// Edge weights from the mask (H x W, non-zero = inside) and the optional gradient-magnitude
// map Wmap (H x W, >= 0, float or double; null means w = 1 everywhere) with
// w = 1 / (1 + lam * Wmap), computed in double.  Rows run on up to `threads` threads (the
// result does not depend on their number).
template <class T>
inline EdgeWeights build_edge_weights(const PaddedGrid& g, const std::uint8_t* mask, const T* Wmap, double lam,
                                      int threads = 1) {
    const std::int64_t n = g.size, S = g.S;
    pvector<std::uint8_t> m(static_cast<std::size_t>(n));
    scatter_to_padded(g, mask, m.data());
    pvector<double> w(static_cast<std::size_t>(n), 0.0);
    const Bands B = make_bands(g.h);
    const bool par = n >= kParallelMinCells;
    for_bands(B, threads, par, [&](int, int a, int e) {
        for (int r = a - 1; r < e - 1; ++r) {  // box rows of padded rows a..e-1
            const std::int64_t i0 = g.index(r, 0);
            const std::int64_t src0 = static_cast<std::int64_t>(r + g.r0) * g.W + g.c0;
            for (int c = 0; c < g.w; ++c) {
                if (!m[i0 + c]) continue;
                w[i0 + c] = Wmap ? 1.0 / (1.0 + lam * static_cast<double>(Wmap[src0 + c])) : 1.0;
            }
        }
    });
    EdgeWeights ew;
    ew.eE.assign(static_cast<std::size_t>(n), 0.0);
    ew.eN.assign(static_cast<std::size_t>(n), 0.0);
    for_bands(B, threads, par, [&](int, int a, int e) {
        for (std::int64_t i = a * S; i < e * S; ++i) {
            if (!m[i]) continue;
            if (m[i + 1]) ew.eE[i] = 0.5 * (w[i] + w[i + 1]);
            if (m[i - S]) ew.eN[i] = 0.5 * (w[i] + w[i - S]);
        }
    });
    return ew;
}

// Pinhole camera in OpenCV form: pixel (r, c) has image coordinates u = c, v = r and the ray
// ((u - cx) / fx, (v - cy) / fy, 1) in the OpenCV camera frame (x right, y down, z forward).
struct Pinhole {
    double fx = 1.0, fy = 1.0, cx = 0.0, cy = 0.0;
};

// Slopes of the log-depth l = log z (z: depth along the optical axis) at pixel (r, c) from a
// normal N in monohead's frame (x right, y up, z toward the viewer), i.e. the OpenCV normal
// (Nx, -Ny, -Nz).  With d = Nz - Nx (c - cx) / fx + Ny (r - cy) / fy (> 0 when the surface
// faces the camera):  p = dl/dc = Nx / (fx d) (rightwards) and q = -dl/dr = Ny / (fy d)
// (one row up), the perspective counterparts of p = -Nx/Nz, q = -Ny/Nz.
inline void perspective_slopes(const double* n3, const Pinhole& cam, int r, int c, double& p, double& q) {
    const double d = n3[2] - n3[0] * (c - cam.cx) / cam.fx + n3[1] * (r - cam.cy) / cam.fy;
    p = n3[0] / (cam.fx * d);
    q = n3[1] / (cam.fy * d);
}

// Right-hand side b = sum_e w_e g_e (e_j - e_i) on the padded grid, with g = (p_i + p_j) / 2 on
// horizontal pairs and (q_i + q_j) / 2 on vertical ones, the slopes of each mask pixel given by
// slopes(r, c, k, p, q) (image row and column, raster index k = r * W + c; only mask pixels are
// asked).  Gathered cell by cell (each cell sums the fluxes of its four edges), so row bands
// run on up to `threads` threads with results independent of their number; each band streams
// its rows with a few row buffers of p and q.
template <class Slopes>
void build_rhs_with(const PaddedGrid& g, const EdgeWeights& ew, const std::uint8_t* mask, Slopes&& slopes,
                    double* b, int threads = 1) {
    const std::int64_t S = g.S;
    const double* eE = ew.eE.data();
    const double* eN = ew.eN.data();
    std::fill(b, b + S, 0.0);
    std::fill(b + static_cast<std::int64_t>(g.h + 1) * S, b + g.size, 0.0);
    const Bands B = make_bands(g.h);
    const bool par = g.size >= kParallelMinCells;
    for_bands(B, threads, par, [&](int, int a, int e) {
        std::vector<double> buf(static_cast<std::size_t>(6 * S), 0.0);
        double* pr[3] = {buf.data(), buf.data() + S, buf.data() + 2 * S};  // p of rows r-1, r, r+1
        double* qr[3] = {buf.data() + 3 * S, buf.data() + 4 * S, buf.data() + 5 * S};
        auto load = [&](int r, double* p, double* q) {  // padded row r; zero outside the box
            std::fill(p, p + S, 0.0);
            std::fill(q, q + S, 0.0);
            if (r < 1 || r > g.h) return;
            const int ir = r - 1 + g.r0;
            const std::int64_t src0 = static_cast<std::int64_t>(ir) * g.W + g.c0;
            for (int c = 0; c < g.w; ++c)
                if (mask[src0 + c]) slopes(ir, c + g.c0, src0 + c, p[c + 1], q[c + 1]);
        };
        load(a - 1, pr[0], qr[0]);
        load(a, pr[1], qr[1]);
        for (int r = a; r < e; ++r) {
            load(r + 1, pr[2], qr[2]);
            const double* p = pr[1];
            const double* qu = qr[0];  // row above (r - 1)
            const double* q = qr[1];
            const double* qd = qr[2];  // row below (r + 1)
            const std::int64_t row = static_cast<std::int64_t>(r) * S;
            b[row] = 0.0;
            b[row + S - 1] = 0.0;
            for (std::int64_t c = 1; c <= g.w; ++c) {
                const std::int64_t i = row + c;
                const double fE = eE[i] * 0.5 * (p[c] + p[c + 1]);      // edge i -> i+1
                const double fW = eE[i - 1] * 0.5 * (p[c - 1] + p[c]);  // edge i-1 -> i
                const double fN = eN[i] * 0.5 * (q[c] + qu[c]);         // edge i -> i-S
                const double fS = eN[i + S] * 0.5 * (qd[c] + q[c]);     // edge i+S -> i
                b[i] = (fW + fS) - (fE + fN);
            }
            std::swap(pr[0], pr[1]);
            std::swap(pr[1], pr[2]);
            std::swap(qr[0], qr[1]);
            std::swap(qr[1], qr[2]);
        }
    });
}

// Right-hand side from an H x W x 3 normal map (row-major, interleaved, float or double; only
// mask pixels are read): p = -Nx/Nz, q = -Ny/Nz in double.
template <class T>
inline void build_rhs(const PaddedGrid& g, const EdgeWeights& ew, const T* normals, const std::uint8_t* mask,
                      double* b, int threads = 1) {
    build_rhs_with(
        g, ew, mask,
        [normals](int, int, std::int64_t k, double& p, double& q) {
            const T* n3 = normals + 3 * k;
            const double inv = -1.0 / static_cast<double>(n3[2]);
            p = static_cast<double>(n3[0]) * inv;
            q = static_cast<double>(n3[1]) * inv;
        },
        b, threads);
}

// y = L x on the padded grid; returns x . y (used by CG).
inline double laplacian_apply(const PaddedGrid& g, const double* eE, const double* eN,
                              const double* x, double* y) {
    const std::int64_t S = g.S, lo = g.first(), hi = g.last();
    double dot = 0.0;
    for (std::int64_t i = lo; i < hi; ++i) {
        const double d = eE[i] + eE[i - 1] + eN[i] + eN[i + S];
        const double v = d * x[i] - eE[i] * x[i + 1] - eE[i - 1] * x[i - 1] - eN[i] * x[i - S] -
                         eN[i + S] * x[i + S];
        y[i] = v;
        dot += x[i] * v;
    }
    return dot;
}

// Diagonal of L at cell i.
inline double laplacian_diag(const double* eE, const double* eN, std::int64_t i, std::int64_t S) {
    return eE[i] + eE[i - 1] + eN[i] + eN[i + S];
}

}  // namespace monohead
