// Preconditioned conjugate gradients on the padded grid, with the stopping rule shared by
// every iterative method of monohead: ||b - L h|| <= tol * ||b||.  Plain C++17.
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

#include "masked_grid.hpp"
#include "wls_system.hpp"

namespace monohead {

struct SolveStats {
    int iterations = 0;
    double residual = 0.0;  // final true relative residual ||b - L h|| / ||b||
    bool converged = false;
};

// Solve L x = b (L from the edge weights) by PCG.  `x` holds the initial guess on entry.
// `precond(r, z, &zAp)` applies z = M^{-1} r on padded arrays, returns r . z and sets zAp to
// z . (the previous contents of z's buffer, which is L p).  The direction update is the
// flexible one, beta = -(z . L p) / (p . L p) (FCG(1), Notay), which equals the classical
// PCG beta for a fixed SPD preconditioner and stays robust when the preconditioner (a
// K-cycle) varies slightly between iterations.  Work arrays are allocated here and freed on
// return; z shares its storage with L p.  A true residual is recomputed whenever the recursive one meets the
// tolerance, and iteration continues (restarted) if the true one does not.
template <class Precond>
SolveStats pcg(const PaddedGrid& g, const EdgeWeights& ew, const double* b, double* x, double tol,
               int maxiter, Precond&& precond) {
    const std::int64_t lo = g.first(), hi = g.last(), n = g.size;
    const double* eE = ew.eE.data();
    const double* eN = ew.eN.data();
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
        laplacian_apply(g, eE, eN, x, Ap.data());
        double s = 0.0;
        for (std::int64_t i = lo; i < hi; ++i) {
            r[i] = b[i] - Ap[i];
            s += r[i] * r[i];
        }
        return std::sqrt(s);
    };

    double rnorm = true_residual();
    int restarts = 0;
    while (true) {
        if (rnorm <= target) break;
        if (st.iterations >= maxiter) break;
        double zAp = 0.0, pr = 0.0;
        precond(r.data(), z, &zAp);
        for (std::int64_t i = lo; i < hi; ++i) {
            p[i] = z[i];
            pr += p[i] * r[i];
        }
        while (st.iterations < maxiter) {
            const double pAp = laplacian_apply(g, eE, eN, p.data(), Ap.data());
            if (!(pAp > 0.0)) break;  // breakdown (p in the null space): restart from true residual
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
        if (rnorm <= target || st.iterations >= maxiter || ++restarts > 5) break;
    }
    st.residual = rnorm / bnorm;
    st.converged = rnorm <= target;
    return st;
}

}  // namespace monohead
