// Discontinuity-preserving integration: the pieces of the iteratively reweighted least squares
// (IRLS) of Integrator::solve_robust.  Plain C++17, no Python types.
//
// Energy (sharpness s > 0, scale sigma fixed for the whole iteration):
//   E(h) = sum_e w_e sigma^2 log(1 + r_e^2 / sigma^2),   r_e = h_j - h_i - g_e,
// with w_e the paper's edge weights and g_e the averaged slope of the staggered grid
// (wls_system.hpp).  This is the Cauchy (Lorentzian) penalty of each edge's residual: quadratic
// for |r_e| << sigma (the paper's WLS), logarithmic beyond, so an edge across a depth step pays
// a bounded price instead of spreading the step over the neighbourhood.  The scale is
// sigma = 1.4826 median_e |r_e| / s on the residuals of the smooth (WLS) solution, i.e. s robust
// standard deviations: s -> 0 gives back the WLS energy.
//
// Majorize-minimize: log(1 + t) is concave, so at the current h_k
//   E(h) <= E(h_k) + sum_e w_e omega_e (r_e(h)^2 - r_e(h_k)^2),  omega_e = 1 / (1 + r_e(h_k)^2 / sigma^2),
// and any h that decreases the weighted quadratic sum_e w_e omega_e r_e^2 below its value at h_k
// decreases E.  Conjugate gradients started at h_k decrease that quadratic at every iteration
// (it minimises the energy norm of the error over growing Krylov spaces), so E decreases at every
// reweighting however loosely each linear system is solved; more accurate solves decrease it
// more per reweighting.  The weights w_e omega_e are BiNI's idea (trust the side of a pixel whose
// residual is small) written as the exact MM weights of one energy.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "masked_grid.hpp"
#include "wls_system.hpp"

namespace monohead {

// Averaged slopes of every edge on the padded grid: gE[i] = (p_i + p_{i+1}) / 2 for the edge
// i -- i+1, gN[i] = (q_i + q_{i-S}) / 2 for i -- i-S (zero where the edge weight is zero).
struct EdgeSlopes {
    std::vector<double> gE, gN;
};

// slopes(r, c, k, p, q) as in build_rhs_with: image row, column, raster index -> p, q.
template <class Slopes>
EdgeSlopes edge_slopes(const PaddedGrid& g, const EdgeWeights& ew, const std::uint8_t* mask, Slopes&& slopes) {
    const std::int64_t n = g.size, S = g.S;
    std::vector<double> p(static_cast<std::size_t>(n), 0.0), q(static_cast<std::size_t>(n), 0.0);
    for_box_pixels(g, [&](int ir, int ic, std::int64_t src, std::int64_t i) {
        if (mask[src]) slopes(ir, ic, src, p[i], q[i]);
    });
    EdgeSlopes es;
    es.gE.assign(static_cast<std::size_t>(n), 0.0);
    es.gN.assign(static_cast<std::size_t>(n), 0.0);
    for (std::int64_t i = g.first(); i < g.last(); ++i) {
        if (ew.eE[i] > 0.0) es.gE[i] = 0.5 * (p[i] + p[i + 1]);
        if (ew.eN[i] > 0.0) es.gN[i] = 0.5 * (q[i] + q[i - S]);
    }
    return es;
}

// b = sum_e w_e g_e (e_j - e_i) from per-edge slopes.
inline void rhs_from_edge_slopes(const PaddedGrid& g, const EdgeWeights& ew, const EdgeSlopes& es, double* b) {
    const std::int64_t S = g.S;
    std::fill(b, b + g.size, 0.0);
    for (std::int64_t i = g.first(); i < g.last(); ++i) {
        const double fE = ew.eE[i] * es.gE[i];
        const double fN = ew.eN[i] * es.gN[i];
        b[i] -= fE + fN;
        b[i + 1] += fE;
        b[i - S] += fN;
    }
}

// Residuals r_e = h_j - h_i - g_e of every edge with a non-zero base weight (0 elsewhere).
inline void edge_residuals(const PaddedGrid& g, const EdgeWeights& base, const EdgeSlopes& es, const double* h,
                           std::vector<double>& rE, std::vector<double>& rN) {
    const std::int64_t S = g.S;
    rE.assign(static_cast<std::size_t>(g.size), 0.0);
    rN.assign(static_cast<std::size_t>(g.size), 0.0);
    for (std::int64_t i = g.first(); i < g.last(); ++i) {
        if (base.eE[i] > 0.0) rE[i] = h[i + 1] - h[i] - es.gE[i];
        if (base.eN[i] > 0.0) rN[i] = h[i - S] - h[i] - es.gN[i];
    }
}

// 1.4826 * median |r_e| over the edges with a non-zero base weight (0 if there is none).
inline double robust_scale(const PaddedGrid& g, const EdgeWeights& base, const std::vector<double>& rE,
                           const std::vector<double>& rN) {
    std::vector<double> a;
    a.reserve(static_cast<std::size_t>(2 * (g.last() - g.first())));
    for (std::int64_t i = g.first(); i < g.last(); ++i) {
        if (base.eE[i] > 0.0) a.push_back(std::abs(rE[i]));
        if (base.eN[i] > 0.0) a.push_back(std::abs(rN[i]));
    }
    if (a.empty()) return 0.0;
    auto mid = a.begin() + static_cast<std::ptrdiff_t>(a.size() / 2);
    std::nth_element(a.begin(), mid, a.end());
    return 1.4826 * *mid;
}

// E = sum_e w_e sigma^2 log(1 + r_e^2 / sigma^2) (sigma > 0).
inline double cauchy_energy(const PaddedGrid& g, const EdgeWeights& base, const std::vector<double>& rE,
                            const std::vector<double>& rN, double sigma) {
    const double s2 = sigma * sigma;
    double e = 0.0;
    for (std::int64_t i = g.first(); i < g.last(); ++i) {
        if (base.eE[i] > 0.0) e += base.eE[i] * std::log1p(rE[i] * rE[i] / s2);
        if (base.eN[i] > 0.0) e += base.eN[i] * std::log1p(rN[i] * rN[i] / s2);
    }
    return s2 * e;
}

// The MM weights: w_e / (1 + r_e^2 / sigma^2).
inline void cauchy_weights(const PaddedGrid& g, const EdgeWeights& base, const std::vector<double>& rE,
                           const std::vector<double>& rN, double sigma, EdgeWeights& out) {
    const double inv = 1.0 / (sigma * sigma);
    out.eE.assign(static_cast<std::size_t>(g.size), 0.0);
    out.eN.assign(static_cast<std::size_t>(g.size), 0.0);
    for (std::int64_t i = g.first(); i < g.last(); ++i) {
        if (base.eE[i] > 0.0) out.eE[i] = base.eE[i] / (1.0 + rE[i] * rE[i] * inv);
        if (base.eN[i] > 0.0) out.eN[i] = base.eN[i] / (1.0 + rN[i] * rN[i] * inv);
    }
}

struct RobustOptions {
    double sharpness = 2.0;       // s > 0: sigma = 1.4826 median|r| / s
    int max_reweightings = 100;   // outer iterations
    double energy_tol = 1e-2;     // stop when a reweighting lowers E by less than energy_tol * E
    int inner_iterations = 3;     // CG iterations per reweighting (warm started)
};

struct RobustReport {
    int reweightings = 0;
    int cg_iterations = 0;        // all CG iterations, the smooth solve's included
    double scale = 0.0;           // sigma
    bool converged = false;       // energy_tol reached within max_reweightings
    std::vector<double> energies; // E after the smooth solve, then after each reweighting
};

}  // namespace monohead
