// Depth prior fused into the WLS system: minimise
//   sum_e w_e (h_j - h_i - g_e)^2 + sum_i lambda_i (h_i - t_i)^2,
// whose normal equations are (L + D) h = b + D t with D = diag(lambda).  Plain C++17.
//
// The solver is flexible CG (FCG(1), as pcg.hpp) on L + D preconditioned by the multigrid of L
// alone: its coarsest level adds a rank-one term per component, so it is SPD and spectrally
// close to L + D wherever the prior is weak against the gradients (the usual case), and the
// few outlying eigenvalues (the component constants, pinned by D) cost CG a few iterations.
// Components of the mask without any prior pixel keep the orthographic gauge (right-hand side
// projected to zero sum, result shifted to mean 0 there).
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

#include "masked_grid.hpp"
#include "pcg.hpp"
#include "wls_system.hpp"

namespace monohead {

// Solve (L + D) x = b by FCG(1) with `precond` (the pcg.hpp convention: z shares its buffer
// with A p, precond(r, z, &zAp) returns r . z).  x holds the initial guess.  Single-threaded.
template <class Precond>
SolveStats pcg_with_diagonal(const PaddedGrid& g, const EdgeWeights& ew, const std::vector<double>& D,
                             const double* b, double* x, double tol, int maxiter, Precond&& precond) {
    const std::int64_t lo = g.first(), hi = g.last(), n = g.size, S = g.S;
    const double* eE = ew.eE.data();
    const double* eN = ew.eN.data();
    const double* d = D.data();
    auto apply = [&](const double* v, double* y) {
        double dot = 0.0;
        for (std::int64_t i = lo; i < hi; ++i) {
            const double s = (eE[i] + eE[i - 1] + eN[i] + eN[i + S] + d[i]) * v[i] - eE[i] * v[i + 1] -
                             eE[i - 1] * v[i - 1] - eN[i] * v[i - S] - eN[i + S] * v[i + S];
            y[i] = s;
            dot += v[i] * s;
        }
        return dot;
    };
    SolveStats st;
    double bnorm2 = 0.0;
    for (std::int64_t i = lo; i < hi; ++i) bnorm2 += b[i] * b[i];
    const double bnorm = std::sqrt(bnorm2);
    if (bnorm == 0.0) {
        std::fill(x, x + n, 0.0);
        st.converged = true;
        return st;
    }
    const double target = tol * bnorm;
    std::vector<double> r(static_cast<std::size_t>(n), 0.0), p(static_cast<std::size_t>(n), 0.0),
        Ap(static_cast<std::size_t>(n), 0.0);
    double* z = Ap.data();
    auto true_residual = [&]() {
        apply(x, Ap.data());
        double s = 0.0;
        for (std::int64_t i = lo; i < hi; ++i) {
            r[i] = b[i] - Ap[i];
            s += r[i] * r[i];
        }
        return std::sqrt(s);
    };
    double rnorm = true_residual();
    int restarts = 0;
    while (rnorm > target && st.iterations < maxiter) {
        double zAp = 0.0, pr = 0.0;
        precond(r.data(), z, &zAp);
        for (std::int64_t i = lo; i < hi; ++i) {
            p[i] = z[i];
            pr += p[i] * r[i];
        }
        while (st.iterations < maxiter) {
            const double pAp = apply(p.data(), Ap.data());
            if (!(pAp > 0.0)) break;
            const double alpha = pr / pAp;
            double rr = 0.0;
            for (std::int64_t i = lo; i < hi; ++i) {
                x[i] += alpha * p[i];
                r[i] -= alpha * Ap[i];
                rr += r[i] * r[i];
            }
            ++st.iterations;
            if (std::sqrt(rr) <= target) break;
            precond(r.data(), z, &zAp);
            const double beta = -zAp / pAp;
            pr = 0.0;
            for (std::int64_t i = lo; i < hi; ++i) {
                p[i] = z[i] + beta * p[i];
                pr += p[i] * r[i];
            }
        }
        rnorm = true_residual();
        if (++restarts > 5) break;
    }
    st.residual = rnorm / bnorm;
    st.converged = rnorm <= target;
    return st;
}

}  // namespace monohead
