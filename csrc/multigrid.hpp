// Weight-aware aggregation multigrid on the masked pixel grid, used as a CG preconditioner.
// Plain C++17 + Eigen, no Python types.
//
// Design (measured in benchmarks/README.md):
//  * Level l+1 aggregates the 2 x 2 blocks of level l.  With piecewise-constant prolongation P
//    the Galerkin operator P^T L P of a weighted 5-point graph Laplacian is again a weighted
//    5-point graph Laplacian on the coarse grid: each coarse edge weight is the sum of the two
//    fine edge weights that cross between the two blocks.  Weights therefore stay exact through
//    the hierarchy (depth steps with small w are seen on every level), and every level is a
//    structured, branch-free stencil.
//  * Piecewise-constant aggregation under-corrects the smooth error by about a factor of two
//    (Braess), so each coarse operator is divided by `coarse_scale` (over-correction).
//  * Smoother: one red-black Gauss-Seidel sweep, red->black before and black->red after the
//    coarse correction, so the V-cycle is a symmetric operator (required by CG).  Each level
//    is visited in two streaming passes (the V-cycle is memory-bound): a wavefront that does
//    red row r, black row r-1 and the residual + restriction of row r-2 in one sweep, and one
//    that does prolongation row r, black row r-1 and red row r-2.  The residual is restricted
//    at red cells only: after the black half-sweep it is zero at black cells.
//  * K-cycle (Notay & Vassilevski): each coarse level is solved by two steps of flexible CG
//    preconditioned by its own V-step, recursively.  Plain V-cycles of aggregation multigrid
//    need more iterations as the grid grows and on irregular masks (36 on a blobby 512^2
//    mask); with the K-cycle that case takes 9, at about the same cost per iteration on heads.
//    The outer CG is then the flexible FCG(1) (see pcg.hpp).
//  * The hierarchy runs in single precision (CG itself stays in double): half the memory
//    traffic, and a preconditioner only needs a few digits.
//  * Null space: a graph Laplacian is singular with one constant per connected component.  The
//    coarsest level is solved densely with a rank-one term added per component
//    (L + sum_C beta_C 1_C 1_C^T), which is SPD, so the V-cycle stays SPD and never breaks
//    down on the singular system.
#pragma once

#include <Eigen/Dense>
#include <algorithm>
#include <cstdint>
#include <vector>

#include "masked_grid.hpp"

namespace monohead {

struct MgOptions {
    float coarse_scale = 2.0f;   // over-correction: coarse operator = P^T L P / coarse_scale
    int coarsest_max = 128;      // stop coarsening at this many active cells
    bool kcycle = true;          // coarse levels solved by two flexible-CG steps (K-cycle)
};

class Multigrid {
   public:
    struct Level {
        int h = 0, w = 0, S = 0;
        std::int64_t size = 0;
        std::vector<float> eE, eN, invD, x, b;  // b is unused on level 0 (the CG residual is read)
        std::int64_t lo() const { return S; }
        std::int64_t hi() const { return static_cast<std::int64_t>(h + 1) * S; }
    };

    Multigrid() = default;

    // Build the hierarchy from the fine edge weights (padded layout of `g`).
    Multigrid(const PaddedGrid& g, const double* eE, const double* eN, const MgOptions& opt = {})
        : opt_(opt) {
        Level L0;
        L0.h = g.h;
        L0.w = g.w;
        L0.S = g.S;
        L0.size = g.size;
        L0.eE.assign(eE, eE + g.size);
        L0.eN.assign(eN, eN + g.size);
        finish_level(L0);  // level 0 has no b: its right-hand side is the CG residual
        levels_.push_back(std::move(L0));
        while (true) {
            const Level& F = levels_.back();
            if (count_active(F) <= opt_.coarsest_max || (F.h <= 1 && F.w <= 1)) break;
            levels_.push_back(coarsen(F));
        }
        build_coarsest();
        work_.resize(levels_.size());
        if (opt_.kcycle)
            for (std::size_t l = 1; l + 1 < levels_.size(); ++l) {
                const auto n = static_cast<std::size_t>(levels_[l].size);
                work_[l].c.assign(n, 0.0f);
                work_[l].v.assign(n, 0.0f);
                work_[l].r.assign(n, 0.0f);
            }
    }

    int num_levels() const { return static_cast<int>(levels_.size()); }
    const Level& level(int l) const { return levels_[static_cast<std::size_t>(l)]; }

    // Bytes held by the hierarchy (for memory reports).
    std::size_t bytes() const {
        std::size_t n = 0;
        for (const auto& L : levels_)
            n += sizeof(float) * (L.eE.size() + L.eN.size() + L.invD.size() + L.x.size() + L.b.size());
        for (const auto& w : work_) n += sizeof(float) * (w.c.size() + w.v.size() + w.r.size());
        n += sizeof(double) * static_cast<std::size_t>(dense_.rows() * dense_.cols());
        n += sizeof(std::int64_t) * coarse_cells_.size();
        return n;
    }

    // z = M^{-1} r: one symmetric V-cycle with zero initial guess.  r and z are padded fine
    // arrays (z may be any buffer; its border cells are set to 0).  Returns r . z.
    double apply(const double* r, double* z, double* z_dot_old = nullptr) {
        zold_dot_ = 0.0;
        double rz;
        if (num_levels() == 1) {
            solve_coarsest(r);
            rz = output(r, z);
        } else {
            pre_pass(0, r);
            coarse(1);
            rz = post_pass(0, r, z);
        }
        if (z_dot_old) *z_dot_old = zold_dot_;
        return rz;
    }

   private:
    MgOptions opt_;
    std::vector<Level> levels_;
    struct Work {
        std::vector<float> c, v, r;  // K-cycle vectors of one coarse level
    };
    std::vector<Work> work_;
    double zold_dot_ = 0.0;
    std::vector<std::int64_t> coarse_cells_;  // active cells of the coarsest level
    Eigen::MatrixXd dense_;                   // its regularised operator, Cholesky-factorised
    Eigen::LLT<Eigen::MatrixXd> llt_;
    Eigen::VectorXd rhs_, sol_;

    static void finish_level(Level& L) {
        const std::int64_t S = L.S;
        L.invD.assign(static_cast<std::size_t>(L.size), 0.0f);
        for (std::int64_t i = L.lo(); i < L.hi(); ++i) {
            const float d = L.eE[i] + L.eE[i - 1] + L.eN[i] + L.eN[i + S];
            L.invD[i] = d > 0.0f ? 1.0f / d : 0.0f;
        }
        L.x.assign(static_cast<std::size_t>(L.size), 0.0f);
    }

    static std::int64_t count_active(const Level& L) {
        std::int64_t n = 0;
        for (std::int64_t i = L.lo(); i < L.hi(); ++i) n += L.invD[i] > 0.0f;
        return n;
    }

    Level coarsen(const Level& F) const {
        Level C;
        C.h = (F.h + 1) / 2;
        C.w = (F.w + 1) / 2;
        C.S = C.w + 2;
        C.size = static_cast<std::int64_t>(C.h + 2) * C.S;
        C.eE.assign(static_cast<std::size_t>(C.size), 0.0f);
        C.eN.assign(static_cast<std::size_t>(C.size), 0.0f);
        const float s = 1.0f / opt_.coarse_scale;
        const std::int64_t FS = F.S;
        for (int R = 1; R <= C.h; ++R) {
            const std::int64_t f0 = static_cast<std::int64_t>(2 * R - 1) * FS;  // top child row
            const std::int64_t f1 = f0 + FS;                                   // bottom child row
            for (int Cc = 1; Cc <= C.w; ++Cc) {
                const std::int64_t ci = static_cast<std::int64_t>(R) * C.S + Cc;
                const int fc0 = 2 * Cc - 1, fc1 = 2 * Cc;  // left/right child columns
                // Rightward coarse edge: fine edges leaving the right child column.
                float e = F.eE[f0 + fc1];
                if (2 * R <= F.h) e += F.eE[f1 + fc1];
                C.eE[ci] = s * e;
                // Upward coarse edge: fine edges leaving the top child row.
                float n = F.eN[f0 + fc0];
                if (fc1 <= F.w) n += F.eN[f0 + fc1];
                C.eN[ci] = s * n;
            }
        }
        // Edges into the padding are zero by construction except where a child column/row
        // lies in the fine padding; clear the coarse border explicitly.
        for (int R = 1; R <= C.h; ++R) C.eE[static_cast<std::int64_t>(R) * C.S + C.w] = 0.0f;
        for (int Cc = 1; Cc <= C.w; ++Cc) C.eN[static_cast<std::int64_t>(C.S) + Cc] = 0.0f;
        finish_level(C);
        C.b.assign(static_cast<std::size_t>(C.size), 0.0f);
        return C;
    }

    void build_coarsest() {
        const Level& L = levels_.back();
        const std::int64_t S = L.S;
        coarse_cells_.clear();
        std::vector<std::int64_t> pos(static_cast<std::size_t>(L.size), -1);
        for (std::int64_t i = L.lo(); i < L.hi(); ++i) {
            if (L.invD[i] > 0.0f) {
                pos[i] = static_cast<std::int64_t>(coarse_cells_.size());
                coarse_cells_.push_back(i);
            }
        }
        const Eigen::Index n = static_cast<Eigen::Index>(coarse_cells_.size());
        dense_.setZero(n, n);
        for (Eigen::Index k = 0; k < n; ++k) {
            const std::int64_t i = coarse_cells_[static_cast<std::size_t>(k)];
            const double d = double(L.eE[i]) + L.eE[i - 1] + L.eN[i] + L.eN[i + S];
            dense_(k, k) = d;
            if (L.eE[i] > 0.0f) dense_(k, pos[i + 1]) = dense_(pos[i + 1], k) = -double(L.eE[i]);
            if (L.eN[i] > 0.0f) dense_(k, pos[i - S]) = dense_(pos[i - S], k) = -double(L.eN[i]);
        }
        // One rank-one term per connected component makes the operator SPD; for a right-hand
        // side with zero sum over each component it leaves the zero-mean solution unchanged.
        std::vector<std::uint8_t> act(static_cast<std::size_t>(L.size), 0);
        for (std::int64_t i : coarse_cells_) act[i] = 1;
        std::vector<std::int32_t> lab;
        // Coarse cells are linked only through edges of positive weight; cells that are merely
        // adjacent (weight 0) must not share a component, so label on the edge graph.
        const int ncomp = label_edge_components(L, act, lab);
        std::vector<std::vector<Eigen::Index>> members(static_cast<std::size_t>(ncomp));
        for (Eigen::Index k = 0; k < n; ++k)
            members[lab[coarse_cells_[static_cast<std::size_t>(k)]]].push_back(k);
        for (const auto& mem : members) {
            double dsum = 0.0;
            for (Eigen::Index k : mem) dsum += dense_(k, k);
            const double beta = dsum / double(mem.size()) / double(mem.size());
            for (Eigen::Index a : mem)
                for (Eigen::Index b : mem) dense_(a, b) += beta;
        }
        llt_.compute(dense_);
        rhs_.resize(n);
        sol_.resize(n);
    }

    static int label_edge_components(const Level& L, const std::vector<std::uint8_t>& act,
                                     std::vector<std::int32_t>& lab) {
        const std::int64_t S = L.S;
        lab.assign(static_cast<std::size_t>(L.size), -1);
        std::vector<std::int64_t> stack;
        int n = 0;
        for (std::int64_t s0 = L.lo(); s0 < L.hi(); ++s0) {
            if (!act[s0] || lab[s0] >= 0) continue;
            lab[s0] = n;
            stack.push_back(s0);
            while (!stack.empty()) {
                const std::int64_t i = stack.back();
                stack.pop_back();
                const std::int64_t nb[4] = {i + 1, i - 1, i - S, i + S};
                const float wt[4] = {L.eE[i], L.eE[i - 1], L.eN[i], L.eN[i + S]};
                for (int k = 0; k < 4; ++k) {
                    if (wt[k] > 0.0f && lab[nb[k]] < 0) {
                        lab[nb[k]] = n;
                        stack.push_back(nb[k]);
                    }
                }
            }
            ++n;
        }
        return n;
    }

    // Approximate solve on coarse level l of L_l x = Level::b (the restricted residual), into
    // Level::x: exact on the coarsest level, else a K-cycle or a V-cycle.
    void coarse(int l) {
        Level& L = levels_[static_cast<std::size_t>(l)];
        if (l == num_levels() - 1) {
            solve_coarsest(L.b.data());
        } else if (opt_.kcycle) {
            kcycle(l);
        } else {
            vstep(l, L.b.data());
        }
    }

    // One V-step on level l for right-hand side `rhs`, result in Level::x.
    void vstep(int l, const float* rhs) {
        pre_pass(l, rhs);
        coarse(l + 1);
        post_pass<float>(l, rhs, nullptr);
    }

    // y = L_l x on level l; returns x . y.
    double apply_level(const Level& L, const float* x, float* y) const {
        const std::int64_t S = L.S;
        const float* eE = L.eE.data();
        const float* eN = L.eN.data();
        double dot = 0.0;
        for (std::int64_t i = L.lo(); i < L.hi(); ++i) {
            const float d = eE[i] + eE[i - 1] + eN[i] + eN[i + S];
            const float v = d * x[i] - eE[i] * x[i + 1] - eE[i - 1] * x[i - 1] - eN[i] * x[i - S] - eN[i + S] * x[i + S];
            y[i] = v;
            dot += double(x[i]) * v;
        }
        return dot;
    }

    // Notay's K-cycle: two steps of flexible CG on level l, preconditioned by a V-step whose
    // own coarse solve is again a K-cycle.  Makes the iteration count of aggregation
    // multigrid nearly independent of the problem size.
    void kcycle(int l) {
        Level& L = levels_[static_cast<std::size_t>(l)];
        Work& w = work_[static_cast<std::size_t>(l)];
        const std::int64_t lo = L.lo(), hi = L.hi();
        const float* b = L.b.data();
        vstep(l, b);
        std::copy(L.x.begin() + lo, L.x.begin() + hi, w.c.begin() + lo);
        const double rho1 = apply_level(L, w.c.data(), w.v.data());
        if (!(rho1 > 0.0)) return;  // L.x holds the V-step's result
        double alpha1 = 0.0, bb = 0.0, rr = 0.0;
        for (std::int64_t i = lo; i < hi; ++i) {
            alpha1 += double(w.c[i]) * b[i];
            bb += double(b[i]) * b[i];
        }
        const float t = static_cast<float>(alpha1 / rho1);
        for (std::int64_t i = lo; i < hi; ++i) {
            w.r[i] = b[i] - t * w.v[i];
            rr += double(w.r[i]) * w.r[i];
        }
        if (rr <= 0.0625 * bb) {  // residual reduced 4x: one step is enough
            for (std::int64_t i = lo; i < hi; ++i) L.x[i] = t * w.c[i];
            return;
        }
        vstep(l, w.r.data());  // c2 in L.x
        double gamma = 0.0, beta = 0.0, alpha2 = 0.0;
        {
            const std::int64_t S = L.S;
            const float* eE = L.eE.data();
            const float* eN = L.eN.data();
            const float* x = L.x.data();
            for (std::int64_t i = lo; i < hi; ++i) {
                const float d = eE[i] + eE[i - 1] + eN[i] + eN[i + S];
                const float v2 = d * x[i] - eE[i] * x[i + 1] - eE[i - 1] * x[i - 1] - eN[i] * x[i - S] - eN[i + S] * x[i + S];
                gamma += double(x[i]) * w.v[i];
                beta += double(x[i]) * v2;
                alpha2 += double(x[i]) * w.r[i];
            }
        }
        const double rho2 = beta - gamma * gamma / rho1;
        if (!(rho2 > 0.0)) {
            for (std::int64_t i = lo; i < hi; ++i) L.x[i] = t * w.c[i];
            return;
        }
        const float a1 = static_cast<float>(alpha1 / rho1 - gamma * alpha2 / (rho1 * rho2));
        const float a2 = static_cast<float>(alpha2 / rho2);
        for (std::int64_t i = lo; i < hi; ++i) L.x[i] = a1 * w.c[i] + a2 * L.x[i];
    }

    // Red-black Gauss-Seidel update of the cells of one colour in row r (padded row index).
    template <class BT>
    static void gs_row(Level& L, const BT* b, int r, int colour) {
        const std::int64_t S = L.S, row = static_cast<std::int64_t>(r) * S;
        float* x = L.x.data();
        const float* eE = L.eE.data();
        const float* eN = L.eN.data();
        const float* invD = L.invD.data();
        for (std::int64_t i = row + 1 + ((r + 1 + colour) & 1); i <= row + L.w; i += 2)
            x[i] = (static_cast<float>(b[i]) + eE[i] * x[i + 1] + eE[i - 1] * x[i - 1] + eN[i] * x[i - S] +
                    eN[i + S] * x[i + S]) *
                   invD[i];
    }

    // Pre-smoothing from x = 0 (red, then black) fused with the residual and its restriction
    // into the right-hand side of level l + 1.
    template <class BT>
    void pre_pass(int l, const BT* b) {
        Level& L = levels_[static_cast<std::size_t>(l)];
        Level& C = levels_[static_cast<std::size_t>(l + 1)];
        const std::int64_t S = L.S;
        const int h = L.h, w = L.w;
        float* x = L.x.data();
        const float* eE = L.eE.data();
        const float* eN = L.eN.data();
        const float* invD = L.invD.data();
        std::fill(C.b.begin(), C.b.end(), 0.0f);
        for (int r = 1; r <= h + 2; ++r) {
            if (r <= h) {  // red, row r: every neighbour is black and still 0
                const std::int64_t row = static_cast<std::int64_t>(r) * S;
                for (std::int64_t i = row + 1 + ((r + 1) & 1); i <= row + w; i += 2)
                    x[i] = static_cast<float>(b[i]) * invD[i];
            }
            if (r - 1 >= 1 && r - 1 <= h) gs_row(L, b, r - 1, 1);  // black, row r-1
            const int rr = r - 2;                                  // residual at red cells of row r-2
            if (rr >= 1 && rr <= h) {
                const std::int64_t row = static_cast<std::int64_t>(rr) * S;
                float* cb = C.b.data() + static_cast<std::int64_t>((rr + 1) / 2) * C.S;
                for (int c = 1 + ((rr + 1) & 1); c <= w; c += 2) {
                    const std::int64_t i = row + c;
                    const float d = eE[i] + eE[i - 1] + eN[i] + eN[i + S];
                    cb[(c + 1) / 2] += static_cast<float>(b[i]) - d * x[i] + eE[i] * x[i + 1] +
                                       eE[i - 1] * x[i - 1] + eN[i] * x[i - S] + eN[i + S] * x[i + S];
                }
            }
        }
    }

    // Prolongation of the coarse correction fused with post-smoothing (black, then red).  On
    // level 0 also writes z = x in double and returns r . z.
    template <class BT>
    double post_pass(int l, const BT* b, double* z) {
        Level& L = levels_[static_cast<std::size_t>(l)];
        const Level& C = levels_[static_cast<std::size_t>(l + 1)];
        const std::int64_t S = L.S;
        const int h = L.h, w = L.w;
        float* x = L.x.data();
        const float* invD = L.invD.data();
        double dot = 0.0;
        for (int r = 1; r <= h + 2; ++r) {
            if (r <= h) {
                float* xf = x + static_cast<std::int64_t>(r) * S;
                const float* xc = C.x.data() + static_cast<std::int64_t>((r + 1) / 2) * C.S;
                const float* id = invD + static_cast<std::int64_t>(r) * S;
                for (int c = 1; c <= w; ++c)
                    if (id[c] > 0.0f) xf[c] += xc[(c + 1) / 2];
            }
            if (r - 1 >= 1 && r - 1 <= h) gs_row(L, b, r - 1, 1);
            if (r - 2 >= 1 && r - 2 <= h) {
                gs_row(L, b, r - 2, 0);
                if (z) dot += output_row(r - 2, b, z);
            }
        }
        if (z) zero_border_rows(z);
        return dot;
    }

    // z = x (double) on padded row r of level 0 (border columns 0); returns sum r z over it.
    template <class BT>
    double output_row(int r, const BT* rvec, double* z) {
        const Level& L = levels_[0];
        const std::int64_t row = static_cast<std::int64_t>(r) * L.S;
        const float* x = L.x.data();
        double dot = 0.0;
        z[row] = 0.0;
        z[row + L.w + 1] = 0.0;
        double dold = 0.0;
        for (std::int64_t i = row + 1; i <= row + L.w; ++i) {
            const double zi = static_cast<double>(x[i]);
            dold += zi * z[i];  // z's buffer holds the previous L p (flexible CG)
            z[i] = zi;
            dot += static_cast<double>(rvec[i]) * zi;
        }
        zold_dot_ += dold;
        return dot;
    }

    void zero_border_rows(double* z) const {
        const Level& L = levels_[0];
        std::fill(z, z + L.S, 0.0);
        std::fill(z + static_cast<std::int64_t>(L.h + 1) * L.S, z + L.size, 0.0);
    }

    template <class BT>
    double output(const BT* r, double* z) {
        double dot = 0.0;
        for (int row = 1; row <= levels_[0].h; ++row) dot += output_row(row, r, z);
        zero_border_rows(z);
        return dot;
    }

    template <class BT>
    void solve_coarsest(const BT* b) {
        Level& L = levels_.back();
        const Eigen::Index n = static_cast<Eigen::Index>(coarse_cells_.size());
        for (Eigen::Index k = 0; k < n; ++k) rhs_[k] = b[coarse_cells_[static_cast<std::size_t>(k)]];
        sol_ = llt_.solve(rhs_);
        std::fill(L.x.begin(), L.x.end(), 0.0f);
        for (Eigen::Index k = 0; k < n; ++k)
            L.x[coarse_cells_[static_cast<std::size_t>(k)]] = static_cast<float>(sol_[k]);
    }
};

}  // namespace monohead
