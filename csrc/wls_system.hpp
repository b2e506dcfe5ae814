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

namespace monohead {

struct EdgeWeights {
    std::vector<double> eE, eN;
};

// Edge weights from the mask (H x W, non-zero = inside) and the optional gradient-magnitude
// map Wmap (H x W, >= 0; null means w = 1 everywhere) with w = 1 / (1 + lam * Wmap).
inline EdgeWeights build_edge_weights(const PaddedGrid& g, const std::uint8_t* mask,
                                      const double* Wmap, double lam) {
    const std::int64_t n = g.size, S = g.S;
    std::vector<std::uint8_t> m(static_cast<std::size_t>(n));
    scatter_to_padded(g, mask, m.data());
    std::vector<double> w(static_cast<std::size_t>(n), 0.0);
    for (int r = 0; r < g.h; ++r) {
        const std::int64_t i0 = g.index(r, 0);
        const std::int64_t src0 = static_cast<std::int64_t>(r + g.r0) * g.W + g.c0;
        for (int c = 0; c < g.w; ++c) {
            if (!m[i0 + c]) continue;
            w[i0 + c] = Wmap ? 1.0 / (1.0 + lam * Wmap[src0 + c]) : 1.0;
        }
    }
    EdgeWeights ew;
    ew.eE.assign(static_cast<std::size_t>(n), 0.0);
    ew.eN.assign(static_cast<std::size_t>(n), 0.0);
    for (std::int64_t i = g.first(); i < g.last(); ++i) {
        if (!m[i]) continue;
        if (m[i + 1]) ew.eE[i] = 0.5 * (w[i] + w[i + 1]);
        if (m[i - S]) ew.eN[i] = 0.5 * (w[i] + w[i - S]);
    }
    return ew;
}

// Right-hand side b on the padded grid from an H x W x 3 normal map (row-major, interleaved;
// only mask pixels are read) and the edge weights: b = sum_e w_e g_e (e_j - e_i) with
// g = (p_i + p_j) / 2 on horizontal pairs and (q_i + q_j) / 2 on vertical ones,
// p = -Nx/Nz, q = -Ny/Nz.  Streams the rows with two small row buffers.
inline void build_rhs(const PaddedGrid& g, const EdgeWeights& ew, const double* normals,
                      const std::uint8_t* mask, double* b) {
    const std::int64_t S = g.S;
    const double* eE = ew.eE.data();
    const double* eN = ew.eN.data();
    std::fill(b, b + g.size, 0.0);
    std::vector<double> p_cur(static_cast<std::size_t>(S), 0.0), q_cur(static_cast<std::size_t>(S), 0.0),
        q_prev(static_cast<std::size_t>(S), 0.0);
    for (int r = 0; r < g.h; ++r) {
        const std::int64_t src0 = static_cast<std::int64_t>(r + g.r0) * g.W + g.c0;
        for (int c = 0; c < g.w; ++c) {
            double p = 0.0, q = 0.0;
            if (mask[src0 + c]) {
                const double* n3 = normals + 3 * (src0 + c);
                const double inv = -1.0 / n3[2];
                p = n3[0] * inv;
                q = n3[1] * inv;
            }
            p_cur[static_cast<std::size_t>(c) + 1] = p;
            q_cur[static_cast<std::size_t>(c) + 1] = q;
        }
        const std::int64_t i0 = g.index(r, 0) - 1;  // padded index of column 0 of this row
        for (std::int64_t c = 1; c <= g.w; ++c) {
            const std::int64_t i = i0 + c;
            // Flux of the rightward edge i -> i+1 and of the upward edge i -> i-S.
            const double fE = eE[i] * 0.5 * (p_cur[c] + p_cur[c + 1]);
            const double fN = eN[i] * 0.5 * (q_cur[c] + q_prev[c]);
            b[i] -= fE + fN;
            b[i + 1] += fE;
            b[i - S] += fN;
        }
        std::swap(q_cur, q_prev);
    }
}

// Edge weights given explicitly per pixel (H x W maps): eEmap[r, c] is the weight of the pair
// (r, c)-(r, c+1), eNmap[r, c] that of the pair (r, c)-(r-1, c).  Pairs with an end outside the
// mask get weight 0 whatever the maps hold; the caller guarantees weights > 0 elsewhere.
inline EdgeWeights edge_weights_from_maps(const PaddedGrid& g, const std::uint8_t* mask, const double* eEmap,
                                          const double* eNmap) {
    const std::int64_t n = g.size, S = g.S;
    std::vector<std::uint8_t> m(static_cast<std::size_t>(n));
    scatter_to_padded(g, mask, m.data());
    EdgeWeights ew;
    ew.eE.assign(static_cast<std::size_t>(n), 0.0);
    ew.eN.assign(static_cast<std::size_t>(n), 0.0);
    for (int r = 0; r < g.h; ++r) {
        const std::int64_t i0 = g.index(r, 0);
        const std::int64_t src0 = static_cast<std::int64_t>(r + g.r0) * g.W + g.c0;
        for (int c = 0; c < g.w; ++c) {
            const std::int64_t i = i0 + c;
            if (!m[i]) continue;
            if (m[i + 1]) ew.eE[i] = eEmap[src0 + c];
            if (m[i - S]) ew.eN[i] = eNmap[src0 + c];
        }
    }
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

// Right-hand side b = sum_e w_e g_e (e_j - e_i) as build_rhs, with the slopes of each mask
// pixel given by slopes(r, c, k, p, q) (image row and column, raster index k = r * W + c).
template <class Slopes>
void build_rhs_with(const PaddedGrid& g, const EdgeWeights& ew, const std::uint8_t* mask, Slopes&& slopes,
                    double* b) {
    const std::int64_t S = g.S;
    const double* eE = ew.eE.data();
    const double* eN = ew.eN.data();
    std::fill(b, b + g.size, 0.0);
    std::vector<double> p_cur(static_cast<std::size_t>(S), 0.0), q_cur(static_cast<std::size_t>(S), 0.0),
        q_prev(static_cast<std::size_t>(S), 0.0);
    for (int r = 0; r < g.h; ++r) {
        const std::int64_t src0 = static_cast<std::int64_t>(r + g.r0) * g.W + g.c0;
        for (int c = 0; c < g.w; ++c) {
            double p = 0.0, q = 0.0;
            if (mask[src0 + c]) slopes(r + g.r0, c + g.c0, src0 + c, p, q);
            p_cur[static_cast<std::size_t>(c) + 1] = p;
            q_cur[static_cast<std::size_t>(c) + 1] = q;
        }
        const std::int64_t i0 = g.index(r, 0) - 1;
        for (std::int64_t c = 1; c <= g.w; ++c) {
            const std::int64_t i = i0 + c;
            const double fE = eE[i] * 0.5 * (p_cur[c] + p_cur[c + 1]);
            const double fN = eN[i] * 0.5 * (q_cur[c] + q_prev[c]);
            b[i] -= fE + fN;
            b[i + 1] += fE;
            b[i - S] += fN;
        }
        std::swap(q_cur, q_prev);
    }
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
