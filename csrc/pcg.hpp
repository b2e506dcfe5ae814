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
        acc[0] += sum_range<1>(a * S, e * S, [&](std::int64_t i) { return std::array<double, 1>{b[i] * b[i]}; })[0];
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
            acc[0] += sum_range<1>(a * S, e * S, [&](std::int64_t i) {
                const double ri = b[i] - laplacian_at<kDiag>(eE, eN, dg, x, i, S);
                rp[i] = ri;
                return std::array<double, 1>{ri * ri};
            })[0];
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
    // p = z + beta p (first: p = z) fused with A p, in one banded wavefront: each band updates
    // p row by row and applies A one row behind; the two rows at its edges, whose stencils
    // reach the neighbouring bands' p, follow after a barrier.  z shares its buffer with A p:
    // row r of A p is written only after row r of z was read.  Returns {p . r, p . A p}, each
    // summed per band (rows in a fixed order) then over the bands in order.
    const int nb = B.count;
    auto update_p = [&](double beta, bool first) {
        part.assign(static_cast<std::size_t>(nb) * 2, 0.0);
        double* pt = part.data();
        auto p_row = [&](int r) {
            return sum_range<1>(static_cast<std::int64_t>(r) * S, static_cast<std::int64_t>(r + 1) * S,
                                [&](std::int64_t i) {
                                    const double pi = first ? z[i] : z[i] + beta * pp[i];
                                    pp[i] = pi;
                                    return std::array<double, 1>{pi * rp[i]};
                                })[0];
        };
        auto ap_row = [&](int r) {
            return sum_range<1>(static_cast<std::int64_t>(r) * S, static_cast<std::int64_t>(r + 1) * S,
                                [&](std::int64_t i) {
                                    const double v = laplacian_at<kDiag>(eE, eN, dg, pp, i, S);
                                    app[i] = v;
                                    return std::array<double, 1>{pp[i] * v};
                                })[0];
        };
#ifdef _OPENMP
#pragma omp parallel num_threads(threads) if (par && threads > 1 && nb > 1)
#endif
        {
#ifdef _OPENMP
#pragma omp for schedule(static)
#endif
            for (int k = 0; k < nb; ++k) {
                const int a = B.begin(k), e = B.end(k);
                double spr = 0.0, spap = 0.0;
                for (int r = a; r < e; ++r) {
                    spr += p_row(r);
                    if (r - 1 >= a + 1) spap += ap_row(r - 1);
                }
                pt[2 * k] = spr;
                pt[2 * k + 1] = spap;
            }
#ifdef _OPENMP
#pragma omp for schedule(static)
#endif
            for (int k = 0; k < nb; ++k) {
                const int a = B.begin(k), e = B.end(k);
                double spap = pt[2 * k + 1] + ap_row(a);
                if (e - 1 > a) spap += ap_row(e - 1);
                pt[2 * k + 1] = spap;
            }
        }
        std::array<double, 2> out{0.0, 0.0};
        for (int k = 0; k < nb; ++k) {
            out[0] += pt[2 * k];
            out[1] += pt[2 * k + 1];
        }
        return out;
    };

    int restarts = 0;
    while (true) {
        if (rnorm <= target) break;
        if (st.iterations >= maxiter) break;
        double zAp = 0.0;
        precond(rp, z, &zAp);
        auto pq = update_p(0.0, true);
        while (st.iterations < maxiter) {
            const double pr = pq[0], pAp = pq[1];
            if (!(pAp > 0.0)) break;  // breakdown (p in the null space): restart from true residual
            const double alpha = pr / pAp;
            const double rr = reduce_bands<1>(B, threads, par, part, [&](int, int a, int e, double* acc) {
                acc[0] += sum_range<1>(a * S, e * S, [&](std::int64_t i) {
                    x[i] += alpha * pp[i];
                    const double ri = rp[i] - alpha * app[i];
                    rp[i] = ri;
                    return std::array<double, 1>{ri * ri};
                })[0];
            })[0];
            ++st.iterations;
            if (std::sqrt(rr) <= target || st.iterations >= maxiter) break;
            precond(rp, z, &zAp);
            pq = update_p(-zAp / pAp, false);  // beta = -(z . A p) / (p . A p), the former p
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
