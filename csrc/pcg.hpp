// Preconditioned conjugate gradients on the padded grid, with the stopping rule shared by
// every iterative method of monohead: ||b - L h|| <= tol * ||b||.  Plain C++17 (+ OpenMP).
//
// Threads: every vector operation and the operator run over the row bands of parallel.hpp,
// and every dot product is summed per band then in band order, so the iterates are bitwise
// identical for any thread count.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <vector>

#include "masked_grid.hpp"
#include "parallel.hpp"
#include "pool.hpp"
#include "wls_system.hpp"

namespace monohead {

struct SolveStats {
    int iterations = 0;
    double residual = 0.0;  // final true relative residual ||b - L h|| / ||b||
    bool converged = false;
};

// A padded-grid array of doubles, all `v`, filled band by band on up to `threads` threads (no
// serial zeroing pass, and each band's pages are first touched by a thread that works on it).
inline PoolArray<double> grid_array(const PaddedGrid& g, int threads, double v = 0.0) {
    PoolArray<double> a(static_cast<std::size_t>(g.size));
    const std::int64_t S = g.S;
    double* p = a.get();
    std::fill(p, p + S, v);
    std::fill(p + static_cast<std::int64_t>(g.h + 1) * S, p + g.size, v);
    for_bands(make_bands(g.h), threads, g.size >= kParallelMinCells,
              [&](int, int r0, int r1) { std::fill(p + r0 * S, p + r1 * S, v); });
    return a;
}

// ((L + diag(dg)) x)[i] of the double-precision system; kDiag false: L x (dg unused).
template <bool kDiag>
inline double laplacian_at(const double* eE, const double* eN, const double* dg, const double* x, std::int64_t i,
                           std::int64_t S) {
    double d = eE[i] + eE[i - 1] + eN[i] + eN[i + S];
    if constexpr (kDiag) d += dg[i];
    return d * x[i] - eE[i] * x[i + 1] - eE[i - 1] * x[i - 1] - eN[i] * x[i - S] - eN[i + S] * x[i + S];
}

// Solve A x = b by PCG on up to `threads` threads, with A = L (L from the edge weights) or, given
// `diag` (padded, >= 0), A = L + diag(diag) (a depth prior, Integrator::solve_prior).  `x` holds
// the initial guess on entry (`zero_guess`: it is 0, so the first residual is b, no product).
// `precond(r, z, &zAp)` applies z = M^{-1} r on padded arrays,
// returns r . z and sets zAp to z . (the previous contents of z's buffer, which is A p).  The
// direction update is the flexible one, beta = -(z . L p) / (p . L p) (FCG(1), Notay), which
// equals the classical PCG beta for a fixed SPD preconditioner and stays robust when the
// preconditioner (a K-cycle) varies slightly between iterations.  Work arrays are allocated
// here and freed on return; z shares its storage with A p.  A true residual is recomputed
// whenever the recursive one meets the tolerance, and iteration continues (restarted) if the
// true one does not.
template <bool kDiag, class Precond>
SolveStats pcg_impl(const PaddedGrid& g, const EdgeWeights& ew, const double* dg, const double* b, double* x,
                    double tol, int maxiter, Precond& precond, int threads, bool zero_guess) {
    const std::int64_t n = g.size, S = g.S;
    const double* eE = ew.eE.data();
    const double* eN = ew.eN.data();
    const Bands B = make_bands(g.h);
    const bool par = n >= kParallelMinCells;
    std::vector<double> part;
    SolveStats st;
    const double bnorm2 = reduce_bands<1>(B, threads, par, part, [&](int, int a, int e, double* acc) {
        double s = 0.0;  // a local sum (acc may alias the arrays: kept in a register)
        for (std::int64_t i = a * S; i < e * S; ++i) s += b[i] * b[i];
        acc[0] += s;
    })[0];
    const double bnorm = std::sqrt(bnorm2);
    if (bnorm == 0.0) {
        std::fill(x, x + n, 0.0);
        st.converged = true;
        return st;
    }
    const double target = tol * bnorm;
    const auto r = grid_array(g, threads), p = grid_array(g, threads), Ap = grid_array(g, threads);
    double* z = Ap.get();
    double* rp = r.get();
    double* pp = p.get();
    double* app = Ap.get();

    auto true_residual = [&]() {
        const double s = reduce_bands<1>(B, threads, par, part, [&](int, int a, int e, double* acc) {
            double s = 0.0;
            for (std::int64_t i = a * S; i < e * S; ++i) {
                const double ri = b[i] - laplacian_at<kDiag>(eE, eN, dg, x, i, S);
                rp[i] = ri;
                s += ri * ri;
            }
            acc[0] += s;
        })[0];
        return std::sqrt(s);
    };

    double rnorm;
    if (zero_guess) {
        for_bands(B, threads, par, [&](int, int a, int e) { std::copy(b + a * S, b + e * S, rp + a * S); });
        rnorm = bnorm;
    } else {
        rnorm = true_residual();
    }
    int restarts = 0;
    while (true) {
        if (rnorm <= target) break;
        if (st.iterations >= maxiter) break;
        double zAp = 0.0;
        precond(rp, z, &zAp);
        double pr = reduce_bands<1>(B, threads, par, part, [&](int, int a, int e, double* acc) {
            double s = 0.0;
            for (std::int64_t i = a * S; i < e * S; ++i) {
                const double pi = z[i];
                pp[i] = pi;
                s += pi * rp[i];
            }
            acc[0] += s;
        })[0];
        while (st.iterations < maxiter) {
            const double pAp = reduce_bands<1>(B, threads, par, part, [&](int, int a, int e, double* acc) {
                double s = 0.0;
                for (std::int64_t i = a * S; i < e * S; ++i) {
                    const double v = laplacian_at<kDiag>(eE, eN, dg, pp, i, S);
                    app[i] = v;
                    s += pp[i] * v;
                }
                acc[0] += s;
            })[0];
            if (!(pAp > 0.0)) break;  // breakdown (p in the null space): restart from true residual
            const double alpha = pr / pAp;
            const double rr = reduce_bands<1>(B, threads, par, part, [&](int, int a, int e, double* acc) {
                double s = 0.0;
                for (std::int64_t i = a * S; i < e * S; ++i) {
                    x[i] += alpha * pp[i];
                    const double ri = rp[i] - alpha * app[i];
                    rp[i] = ri;
                    s += ri * ri;
                }
                acc[0] += s;
            })[0];
            ++st.iterations;
            if (std::sqrt(rr) <= target) break;
            precond(rp, z, &zAp);
            const double beta = -zAp / pAp;
            pr = reduce_bands<1>(B, threads, par, part, [&](int, int a, int e, double* acc) {
                double s = 0.0;
                for (std::int64_t i = a * S; i < e * S; ++i) {
                    const double pi = z[i] + beta * pp[i];
                    pp[i] = pi;
                    s += pi * rp[i];
                }
                acc[0] += s;
            })[0];
        }
        rnorm = true_residual();
        if (rnorm <= target || st.iterations >= maxiter || ++restarts > 5) break;
    }
    st.residual = rnorm / bnorm;
    st.converged = rnorm <= target;
    return st;
}

template <class Precond>
SolveStats pcg(const PaddedGrid& g, const EdgeWeights& ew, const double* b, double* x, double tol, int maxiter,
               Precond&& precond, int threads = 1, bool zero_guess = false, const double* diag = nullptr) {
    if (diag) return pcg_impl<true>(g, ew, diag, b, x, tol, maxiter, precond, threads, zero_guess);
    return pcg_impl<false>(g, ew, nullptr, b, x, tol, maxiter, precond, threads, zero_guess);
}

}  // namespace monohead
