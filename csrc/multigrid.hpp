// Weight-aware aggregation multigrid on the masked pixel grid, used as a CG preconditioner.
// Plain C++17 + Eigen, no Python types.
//
// Design (measured in benchmarks/README.md):
//  * Level l+1 aggregates the 2 x 2 blocks of level l (piecewise-constant prolongation P).
//    The Galerkin operator P^T L P of a weighted 5-point graph Laplacian is again one, each
//    coarse edge the sum of the two fine edges that cross between the blocks; piecewise-constant
//    aggregation then under-corrects the smooth error by about 2 (Braess), so it used to be
//    divided by `coarse_scale` = 2.  It hides a weak edge (a depth step) that falls inside a
//    block: the block ties both sides together.  The coarse edges are now harmonic averages
//    instead (path()): each crossing fine edge in series with the half internal edges of its
//    row (column) in the two blocks, as in cell-centred multigrid for jumping coefficients.
//    Equal weights give exactly the former sum / 2 (the rectangle is bitwise unchanged; on other
//    masks the coarse levels' rim edges are unequal, so only the first coarsening is); a weak
//    edge inside a block weakens the coarse edges across that block, so the step is seen on
//    every level: head+neck 1024^2 / 2048^2 from 6 / 8 to 5 / 6 iterations.  Every level stays
//    a weighted 5-point graph Laplacian, a structured, branch-free stencil, and the V-cycle
//    stays symmetric (restriction P^T, each level's operator SPD up to its null space).
//  * Weak-edge sweeps (MgOptions::weak_sweeps): the level-0 cells within 3 steps of an edge
//    weaker than 0.3x the strongest edge of its cell get 3 more red-black sweeps after the
//    pre-smoothing (the change of the residual they make is added to the restricted one) and,
//    transposed, before the post-smoothing (run on x + P x_c, which post_pass then adds), so
//    the preconditioner stays symmetric.  They run on one thread, in a fixed order, and only
//    when those cells are at most 5 % of the mask: head+neck 2048^2 from 6 to 5 iterations.
//    The robust solve's reweightings keep the summed coarse weights and no weak sweeps
//    (integrator.hpp: their few-step inner solves were tuned with them).
//  * Smoother: red-black Gauss-Seidel, red->black before and black->red after the coarse
//    correction, so the V-cycle is a symmetric operator (required by CG): two sweeps each way
//    on level 0, one on the coarse levels.  Each level is visited in two streaming passes (the
//    V-cycle is memory-bound): a wavefront that does red row r, black row r-1 (and with two
//    sweeps red row r-2, black row r-3) and the residual + restriction of the row after, and
//    one that does prolongation row r, black row r-1, red row r-2 (and black, red again).  The
//    second sweep on level 0 costs little memory traffic (its rows are still in cache) and cuts
//    the iterations: head+neck 256^2 / 1024^2 / 2048^2 from 8 / 9 / 10 to 5 / 6 / 8, the 1024^2
//    rectangle from 7 to 4, a blobby 512^2 mask from 8 to 5 (three sweeps: 4 / 6 / 7 and 4,
//    no faster).  The residual is restricted at red cells only: after the black half-sweep it
//    is zero at black cells.
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
#include <array>
#include <cstdint>
#include <utility>
#include <vector>

#include "masked_grid.hpp"
#include "parallel.hpp"
#include "pool.hpp"

namespace monohead {

struct MgOptions {
    float coarse_scale = 2.0f;   // over-correction: coarse operator = P^T L P / coarse_scale
    int coarsest_max = 128;      // stop coarsening at this many active cells
    float kcycle_reduction = 0.15f;  // K-cycle: one step only when it cut the residual norm below this fraction
    // Red-black Gauss-Seidel sweeps on level 0 before and after the coarse correction (equal
    // counts keep the preconditioner symmetric); the coarse levels do one each.
    int fine_pre_sweeps = 2;
    int fine_post_sweeps = 2;
    // Extra Gauss-Seidel sweeps on level 0 at weak edges: the cells with an edge weaker than
    // `weak_ratio` times their strongest edge, and the cells within `weak_width` grid steps of
    // them, get `weak_sweeps` more red-black sweeps after the pre-smoothing and before the
    // post-smoothing (0: none).  Skipped when those cells are more than `weak_max_fraction` of
    // the active cells (the sweeps run on one thread).
    // Coarse edges by harmonic averaging along the path between the block centres (path());
    // false: the sum of the crossing fine edges divided by coarse_scale (P^T L P / coarse_scale).
    bool harmonic = true;
    int weak_sweeps = 3;
    int weak_width = 3;
    float weak_ratio = 0.3f;
    float weak_max_fraction = 0.05f;
};

class Multigrid {
   public:
    struct Level {
        int h = 0, w = 0, S = 0;
        std::int64_t size = 0;
        pvector<float> eE, eN, invD, x, b;  // b is unused on level 0 (the CG residual is read)
        pvector<float> dg;  // optional diagonal term (a depth prior, prior.hpp); empty: none
        const float* diag() const { return dg.empty() ? nullptr : dg.data(); }
        Bands bands;        // row bands of this level (parallel.hpp)
        bool par = false;   // large enough to be worth several threads
        std::int64_t lo() const { return S; }
        std::int64_t hi() const { return static_cast<std::int64_t>(h + 1) * S; }
    };

    Multigrid() = default;

    // Build the hierarchy from the fine edge weights (padded layout of `g`) on up to `threads`
    // threads (the hierarchy does not depend on the thread count).
    // `diag` (optional, padded, >= 0): a diagonal term of the operator, L + diag(diag); it is
    // coarsened like the edges (summed over each aggregate, divided by coarse_scale).
    Multigrid(const PaddedGrid& g, const double* eE, const double* eN, const MgOptions& opt = {},
              int threads = 1, const double* diag = nullptr)
        : opt_(opt), threads_(std::max(1, threads)) {
        Level L0;
        L0.h = g.h;
        L0.w = g.w;
        L0.S = g.S;
        L0.size = g.size;
        set_bands(L0);
        L0.eE.resize(static_cast<std::size_t>(g.size));
        L0.eN.resize(static_cast<std::size_t>(g.size));
        for_bands(L0.bands, threads_, L0.par, [&](int, int a, int e) {
            const std::int64_t i0 = static_cast<std::int64_t>(a) * g.S, i1 = static_cast<std::int64_t>(e) * g.S;
            for (std::int64_t i = i0; i < i1; ++i) {
                L0.eE[i] = static_cast<float>(eE[i]);
                L0.eN[i] = static_cast<float>(eN[i]);
            }
        });
        // (The border rows hold no edge: they stay 0.)
        if (diag) {
            L0.dg.resize(static_cast<std::size_t>(g.size));
            for (std::int64_t i = 0; i < g.size; ++i) L0.dg[i] = static_cast<float>(diag[i]);
        }
        // level 0 has no b: its right-hand side is the CG residual
        std::vector<std::int64_t> weak_seeds;
        finish_level(L0, opt_.weak_sweeps > 0 ? &weak_seeds : nullptr);
        levels_.push_back(std::move(L0));
        while (true) {
            const Level& F = levels_.back();
            const std::int64_t active = count_active(F);
            if (levels_.size() == 1) active0_ = active;
            if (active <= opt_.coarsest_max || (F.h <= 1 && F.w <= 1)) break;
            levels_.push_back(coarsen(F));
        }
        build_coarsest();
        if (levels_.size() > 1) build_weak(weak_seeds);
        work_.resize(levels_.size());
        for (std::size_t l = 1; l + 1 < levels_.size(); ++l) {
            const auto n = static_cast<std::size_t>(levels_[l].size);
            work_[l].c.assign(n, 0.0f);
            work_[l].v.assign(n, 0.0f);
            work_[l].r.assign(n, 0.0f);
        }
    }

    int num_levels() const { return static_cast<int>(levels_.size()); }
    const Level& level(int l) const { return levels_[static_cast<std::size_t>(l)]; }
    int threads() const { return threads_; }
    void set_threads(int t) { threads_ = std::max(1, t); }
    float kcycle_reduction() const { return opt_.kcycle_reduction; }
    void set_kcycle_reduction(float r) { opt_.kcycle_reduction = r; }
    // Gauss-Seidel sweeps on level 0 before and after the coarse correction (MgOptions).
    std::array<int, 2> fine_sweeps() const { return {opt_.fine_pre_sweeps, opt_.fine_post_sweeps}; }
    void set_fine_sweeps(int pre, int post) {
        opt_.fine_pre_sweeps = std::max(1, pre);
        opt_.fine_post_sweeps = std::max(1, post);
    }

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
    // arrays (z may be any buffer; its border cells are set to 0).  Returns r . z and, in
    // *z_dot_old, z . (the previous contents of z's buffer).
    double apply(const double* r, double* z, double* z_dot_old = nullptr) {
        std::array<double, 2> d;
        if (num_levels() == 1) {
            solve_coarsest(r);
            d = output(r, z);
        } else {
            pre_pass(0, r);
            weak_pre(r);
            coarse(1);
            weak_post(r);
            d = post_pass(0, r, z);
        }
        if (z_dot_old) *z_dot_old = d[1];
        return d[0];
    }

   private:
    MgOptions opt_;
    int threads_ = 1;
    std::vector<Level> levels_;
    struct Work {
        pvector<float> c, v, r;  // K-cycle vectors of one coarse level
    };
    std::vector<Work> work_;
    std::vector<double> part_;                // per-band partial sums of a reduction
    std::vector<std::int64_t> coarse_cells_;  // active cells of the coarsest level
    Eigen::MatrixXd dense_;                   // its regularised operator, Cholesky-factorised
    Eigen::LLT<Eigen::MatrixXd> llt_;
    Eigen::VectorXd rhs_, sol_;

    // Conductance between the centres of two neighbouring blocks along one fine row (or column):
    // the crossing fine edge c in series with the half internal edges a and b of the two blocks
    // on that row (a missing internal edge, at the mask's rim or the grid's end, counts as c).
    // Equal weights give c / 2, the Galerkin weight divided by 2 (the usual over-correction of
    // piecewise-constant aggregation); a weak edge inside a block now weakens the coarse edges
    // across that block instead of being hidden in the aggregate (harmonic averaging of the
    // coefficients, as in cell-centred multigrid for jumping coefficients).
    static float path(float c, float a, float b) {
        a = a > 0.0f ? a : c;
        b = b > 0.0f ? b : c;
        // 1 / (1 / (2a) + 1 / c + 1 / (2b)) with one division
        const float ab2 = 2.0f * a * b, den = c * (a + b) + ab2;
        return c > 0.0f ? c * ab2 / (den > 0.0f ? den : 1.0f) : 0.0f;
    }

    // Weak-edge smoothing (MgOptions::weak_sweeps): the cells, red ones first; the cells whose
    // residual they change (themselves and their neighbours); scratch.
    std::vector<std::int64_t> weak_cells_, weak_supp_;
    std::size_t weak_red_ = 0;
    std::vector<float> weak_dx_, weak_save_;  // dx_[0] = 0, dx_[k + 1]: the change at weak_cells_[k]
    std::vector<std::int32_t> weak_nb_;  // per support cell j: 1 + the positions of j, j + 1, j - 1, j - S, j + S in weak_cells_ (0: none)
    std::int64_t active0_ = 0;           // active cells of level 0

    // The weak-edge cells: the seeds and the active cells within weak_width grid steps of them.
    void build_weak(const std::vector<std::int64_t>& seeds) {
        weak_cells_.clear();
        weak_supp_.clear();
        if (seeds.empty() || opt_.weak_sweeps <= 0) return;
        const Level& L = levels_[0];
        const std::int64_t S = L.S;
        const int wd = std::max(0, opt_.weak_width);
        const double most = opt_.weak_max_fraction * static_cast<double>(active0_);
        if (static_cast<double>(seeds.size()) > most) return;
        std::vector<std::int64_t> cells;
        cells.reserve(seeds.size() * static_cast<std::size_t>((2 * wd + 1) * (2 * wd + 1)));
        auto active = [&](std::int64_t j) { return j >= L.lo() && j < L.hi() && L.invD[j] > 0.0f; };
        for (std::int64_t i : seeds)
            for (int dr = -wd; dr <= wd; ++dr)
                for (int dc = -(wd - std::abs(dr)); dc <= wd - std::abs(dr); ++dc) {
                    const std::int64_t j = i + dr * S + dc;
                    if (active(j)) cells.push_back(j);
                }
        std::sort(cells.begin(), cells.end());
        cells.erase(std::unique(cells.begin(), cells.end()), cells.end());
        if (static_cast<double>(cells.size()) > most) return;
        for (int colour = 0; colour < 2; ++colour)  // red: (row + column) even
            for (std::int64_t i : cells)
                if (((i / S + i % S) & 1) == colour) weak_cells_.push_back(i);
        weak_red_ = 0;
        for (std::int64_t i : cells) weak_red_ += ((i / S + i % S) & 1) == 0;
        for (std::int64_t i : cells)
            for (std::int64_t j : {i, i + 1, i - 1, i - S, i + S})
                if (active(j)) weak_supp_.push_back(j);
        std::sort(weak_supp_.begin(), weak_supp_.end());
        weak_supp_.erase(std::unique(weak_supp_.begin(), weak_supp_.end()), weak_supp_.end());
        std::vector<std::pair<std::int64_t, std::int32_t>> pos(weak_cells_.size());
        for (std::size_t k = 0; k < weak_cells_.size(); ++k) pos[k] = {weak_cells_[k], static_cast<std::int32_t>(k + 1)};
        std::sort(pos.begin(), pos.end());
        // weak_supp_ is increasing, so each of the five neighbours is too: one cursor each into pos.
        std::array<std::size_t, 5> cur{};
        const std::array<std::int64_t, 5> off{0, 1, -1, -S, S};
        weak_nb_.resize(5 * weak_supp_.size());
        for (std::size_t k = 0; k < weak_supp_.size(); ++k)
            for (int m = 0; m < 5; ++m) {
                const std::int64_t q = weak_supp_[k] + off[static_cast<std::size_t>(m)];
                std::size_t& c = cur[static_cast<std::size_t>(m)];
                while (c < pos.size() && pos[c].first < q) ++c;
                weak_nb_[5 * k + static_cast<std::size_t>(m)] = c < pos.size() && pos[c].first == q ? pos[c].second : 0;
            }
        weak_dx_.assign(weak_cells_.size() + 1, 0.0f);
        weak_save_.resize(std::max(weak_cells_.size(), weak_supp_.size()));
    }

    // Red-black Gauss-Seidel on the weak-edge cells of level 0: `sweeps` times red then black,
    // or (reverse) black then red.
    void weak_sweeps(const double* b, bool reverse) {
        Level& L = levels_[0];
        const std::int64_t S = L.S;
        float* x = L.x.data();
        const float* eE = L.eE.data();
        const float* eN = L.eN.data();
        const float* invD = L.invD.data();
        auto half = [&](std::size_t k0, std::size_t k1) {
            for (std::size_t k = k0; k < k1; ++k) {
                const std::int64_t i = weak_cells_[k];
                x[i] = (static_cast<float>(b[i]) + eE[i] * x[i + 1] + eE[i - 1] * x[i - 1] + eN[i] * x[i - S] +
                        eN[i + S] * x[i + S]) *
                       invD[i];
            }
        };
        const std::size_t nr = weak_red_, n = weak_cells_.size();
        for (int s = 0; s < opt_.weak_sweeps; ++s) {
            if (reverse) {
                half(nr, n);
                half(0, nr);
            } else {
                half(0, nr);
                half(nr, n);
            }
        }
    }

    // After pre_pass on level 0: the weak-edge sweeps, and the change of the residual they make
    // (-L dx on their support, black cells included) added to the restricted right-hand side.
    void weak_pre(const double* b) {
        if (weak_cells_.empty()) return;
        Level& L = levels_[0];
        Level& C = levels_[1];
        const std::int64_t S = L.S, CS = C.S;
        float* x = L.x.data();
        for (std::size_t k = 0; k < weak_cells_.size(); ++k) weak_save_[k] = x[weak_cells_[k]];
        weak_sweeps(b, false);
        for (std::size_t k = 0; k < weak_cells_.size(); ++k) weak_dx_[k + 1] = x[weak_cells_[k]] - weak_save_[k];
        const float* eE = L.eE.data();
        const float* eN = L.eN.data();
        const float* dg = L.diag();
        const float* dx = weak_dx_.data();
        for (std::size_t k = 0; k < weak_supp_.size(); ++k) {  // (L dx)_j as stencil() computes it
            const std::int64_t j = weak_supp_[k];
            const std::int32_t* q = &weak_nb_[5 * k];
            float d = eE[j] + eE[j - 1] + eN[j] + eN[j + S];
            if (dg) d += dg[j];
            const float adx = d * dx[q[0]] - eE[j] * dx[q[1]] - eE[j - 1] * dx[q[2]] - eN[j] * dx[q[3]] - eN[j + S] * dx[q[4]];
            C.b[((j / S + 1) / 2) * CS + (j % S + 1) / 2] -= adx;
        }
    }

    // Before post_pass on level 0, the transpose of weak_pre's sweeps (so that the
    // preconditioner stays symmetric): post_pass adds the prolonged correction P x_c in its
    // first stage, so the sweeps run on x + P x_c over their support, which is then taken off again.
    void weak_post(const double* b) {
        if (weak_cells_.empty()) return;
        Level& L = levels_[0];
        const Level& C = levels_[1];
        const std::int64_t S = L.S, CS = C.S;
        float* x = L.x.data();
        for (std::size_t k = 0; k < weak_supp_.size(); ++k) {
            const std::int64_t j = weak_supp_[k];
            weak_save_[k] = C.x[((j / S + 1) / 2) * CS + (j % S + 1) / 2];
            x[j] += weak_save_[k];
        }
        weak_sweeps(b, true);
        for (std::size_t k = 0; k < weak_supp_.size(); ++k) x[weak_supp_[k]] -= weak_save_[k];
    }

    static void set_bands(Level& L) {
        L.bands = make_bands(L.h);
        L.par = L.size >= kParallelMinCells;
    }

    // f(row) for the rows of [a, e) outside [in_lo, in_hi], in increasing order.
    template <class F>
    static void rows_outside(int a, int e, int in_lo, int in_hi, F&& f) {
        for (int r = a; r < e; ++r) {
            if (r >= in_lo && r <= in_hi) {
                r = in_hi;
                continue;
            }
            f(r);
        }
    }

    // invD and x of a level; with `weak`, also the cells with an edge weaker than
    // opt_.weak_ratio times their strongest one, in increasing order.
    void finish_level(Level& L, std::vector<std::int64_t>* weak = nullptr) const {
        const std::int64_t S = L.S;
        L.invD.assign(static_cast<std::size_t>(L.size), 0.0f);
        L.x.assign(static_cast<std::size_t>(L.size), 0.0f);
        std::vector<std::vector<std::int64_t>> found(static_cast<std::size_t>(weak ? L.bands.count : 0));
        const float ratio = opt_.weak_ratio;
        const float* eE = L.eE.data();
        const float* eN = L.eN.data();
        auto is_weak = [&](std::int64_t i) {
            const float e0 = eE[i], e1 = eE[i - 1], e2 = eN[i], e3 = eN[i + S];
            const float lim = ratio * std::max(std::max(e0, e1), std::max(e2, e3));
            return ((e0 > 0.0f) & (e0 < lim)) | ((e1 > 0.0f) & (e1 < lim)) | ((e2 > 0.0f) & (e2 < lim)) |
                   ((e3 > 0.0f) & (e3 < lim));
        };
        for_bands(L.bands, threads_, L.par, [&](int k, int a, int e) {
            for (std::int64_t i = a * S; i < e * S; ++i) {
                float d = eE[i] + eE[i - 1] + eN[i] + eN[i + S];
                if (!L.dg.empty()) d += L.dg[i];
                L.invD[i] = d > 0.0f ? 1.0f / d : 0.0f;
            }
            if (!weak) return;
            for (int r = a; r < e; ++r) {  // a branch-free test per row first (it vectorises)
                const std::int64_t i0 = static_cast<std::int64_t>(r) * S, i1 = i0 + S;
                int any = 0;
                for (std::int64_t i = i0; i < i1; ++i) any |= static_cast<int>(is_weak(i));
                if (!any) continue;
                for (std::int64_t i = i0; i < i1; ++i)
                    if (is_weak(i)) found[static_cast<std::size_t>(k)].push_back(i);
            }
        });
        if (weak)
            for (const auto& f : found) weak->insert(weak->end(), f.begin(), f.end());
    }

    std::int64_t count_active(const Level& L) const {
        std::vector<double> part;
        const auto n = reduce_bands<1>(L.bands, threads_, L.par, part, [&](int, int a, int e, double* acc) {
            std::int64_t k = 0;
            for (std::int64_t i = a * L.S; i < e * L.S; ++i) k += L.invD[i] > 0.0f;
            acc[0] = static_cast<double>(k);
        });
        return static_cast<std::int64_t>(n[0]);
    }

    Level coarsen(const Level& F) const {
        Level C;
        C.h = (F.h + 1) / 2;
        C.w = (F.w + 1) / 2;
        C.S = C.w + 2;
        C.size = static_cast<std::int64_t>(C.h + 2) * C.S;
        set_bands(C);
        C.eE.assign(static_cast<std::size_t>(C.size), 0.0f);
        C.eN.assign(static_cast<std::size_t>(C.size), 0.0f);
        // path() is c / 2 for equal weights: the former P^T L P / 2 (see path()).
        const float s = 2.0f / opt_.coarse_scale, sg = 1.0f / opt_.coarse_scale;
        const bool hm = opt_.harmonic;
        const std::int64_t FS = F.S;
        for_bands(C.bands, threads_, C.par, [&](int, int a, int e) {
            for (int R = a; R < e; ++R) {
                const std::int64_t f0 = static_cast<std::int64_t>(2 * R - 1) * FS;  // top child row
                const std::int64_t f1 = f0 + FS;                                   // bottom child row
                float* __restrict ce = C.eE.data() + static_cast<std::int64_t>(R) * C.S;
                float* __restrict cn = C.eN.data() + static_cast<std::int64_t>(R) * C.S;
                const float* __restrict e0 = F.eE.data() + f0;  // the block row's two fine rows
                const float* __restrict e1 = F.eE.data() + f1;
                const float* __restrict nt = F.eN.data() + f0;       // edges leaving the top row
                const float* __restrict ni = F.eN.data() + f1;       // internal, this block
                const float* __restrict nu = F.eN.data() + f0 - FS;  // internal, the block above
                if (!hm) {  // the plain Galerkin weights / coarse_scale
                    const bool two_rows = 2 * R <= F.h;
                    for (int Cc = 1; Cc <= C.w; ++Cc) {
                        const int fc0 = 2 * Cc - 1, fc1 = 2 * Cc;
                        ce[Cc] = sg * (e0[fc1] + (two_rows ? e1[fc1] : 0.0f));
                        cn[Cc] = sg * (nt[fc0] + (fc1 <= F.w ? nt[fc1] : 0.0f));
                    }
                    continue;
                }
                // Rightward coarse edge: each fine edge leaving the right child column in series
                // with the half internal edges of its row in the two blocks; upward: each fine edge
                // leaving the top child row with the internal edges of its column.  A missing row
                // or column (the grid's end) is padding, whose edges are 0: path() gives 0 for it.
                const int full = F.w / 2;  // coarse columns with two fine columns
                for (int Cc = 1; Cc <= full; ++Cc) {
                    const int fc0 = 2 * Cc - 1, fc1 = 2 * Cc;
                    ce[Cc] = s * (path(e0[fc1], e0[fc0], e0[fc1 + 1]) + path(e1[fc1], e1[fc0], e1[fc1 + 1]));
                    cn[Cc] = s * (path(nt[fc0], ni[fc0], nu[fc0]) + path(nt[fc1], ni[fc1], nu[fc1]));
                }
                if (F.w & 1) {  // the last coarse column holds one fine column (its right edge is cleared below)
                    const int fc0 = F.w;
                    ce[full + 1] = 0.0f;
                    cn[full + 1] = s * path(nt[fc0], ni[fc0], nu[fc0]);
                }
            }
        });
        // Edges into the padding are zero by construction except where a child column/row
        // lies in the fine padding; clear the coarse border explicitly.
        for (int R = 1; R <= C.h; ++R) C.eE[static_cast<std::int64_t>(R) * C.S + C.w] = 0.0f;
        for (int Cc = 1; Cc <= C.w; ++Cc) C.eN[static_cast<std::int64_t>(C.S) + Cc] = 0.0f;
        if (!F.dg.empty()) {  // the diagonal of P^T D P / coarse_scale: sums over the 2 x 2 children
            C.dg.assign(static_cast<std::size_t>(C.size), 0.0f);
            for (int R = 1; R <= C.h; ++R)
                for (int Cc = 1; Cc <= C.w; ++Cc) {
                    float t = 0.0f;
                    for (int fr = 2 * R - 1; fr <= std::min(2 * R, F.h); ++fr)
                        for (int fc = 2 * Cc - 1; fc <= std::min(2 * Cc, F.w); ++fc) t += F.dg[static_cast<std::int64_t>(fr) * FS + fc];
                    C.dg[static_cast<std::int64_t>(R) * C.S + Cc] = t / opt_.coarse_scale;
                }
        }
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
            double d = double(L.eE[i]) + L.eE[i - 1] + L.eN[i] + L.eN[i + S];
            if (!L.dg.empty()) d += L.dg[i];
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
            bool pinned = false;  // a diagonal term already makes this component's block SPD
            if (!L.dg.empty())
                for (Eigen::Index k : mem) pinned = pinned || L.dg[coarse_cells_[static_cast<std::size_t>(k)]] > 0.0f;
            if (pinned) continue;
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
    // Level::x: exact on the coarsest level, else a K-cycle.
    void coarse(int l) {
        if (l == num_levels() - 1) {
            solve_coarsest(levels_[static_cast<std::size_t>(l)].b.data());
        } else {
            kcycle(l);
        }
    }

    // One V-step on level l for right-hand side `rhs`, result in Level::x.
    void vstep(int l, const float* rhs) {
        pre_pass(l, rhs);
        coarse(l + 1);
        post_pass<float>(l, rhs, nullptr);
    }

    // (L_l x)[i] for a float level.
    static float stencil(const float* eE, const float* eN, const float* dg, const float* x, std::int64_t i,
                         std::int64_t S) {
        float d = eE[i] + eE[i - 1] + eN[i] + eN[i + S];
        if (dg) d += dg[i];
        return d * x[i] - eE[i] * x[i + 1] - eE[i - 1] * x[i - 1] - eN[i] * x[i - S] - eN[i + S] * x[i + S];
    }

    // Notay's K-cycle: two steps of flexible CG on level l, preconditioned by a V-step whose
    // own coarse solve is again a K-cycle.  Makes the iteration count of aggregation
    // multigrid nearly independent of the problem size.
    void kcycle(int l) {
        Level& L = levels_[static_cast<std::size_t>(l)];
        Work& w = work_[static_cast<std::size_t>(l)];
        const std::int64_t S = L.S;
        const float* b = L.b.data();
        const float* eE = L.eE.data();
        const float* eN = L.eN.data();
        const float* dgp = L.diag();
        float* x = L.x.data();
        float* c = w.c.data();
        float* v = w.v.data();
        float* rv = w.r.data();
        vstep(l, b);
        // c = x (the V-step's result), v = L c; rho1 = c.v, alpha1 = c.b, bb = b.b.
        const auto s1 = reduce_bands<3>(L.bands, threads_, L.par, part_, [&](int, int a, int e, double* acc) {
            const auto s = sum_range<3>(a * S, e * S, [&](std::int64_t i) {
                const float vi = stencil(eE, eN, dgp, x, i, S);
                c[i] = x[i];
                v[i] = vi;
                return std::array<double, 3>{double(x[i]) * vi, double(x[i]) * b[i], double(b[i]) * b[i]};
            });
            for (int m = 0; m < 3; ++m) acc[m] += s[m];
        });
        const double rho1 = s1[0], alpha1 = s1[1], bb = s1[2];
        if (!(rho1 > 0.0)) return;  // L.x holds the V-step's result
        const float t = static_cast<float>(alpha1 / rho1);
        const auto s2 = reduce_bands<1>(L.bands, threads_, L.par, part_, [&](int, int a, int e, double* acc) {
            acc[0] += sum_range<1>(a * S, e * S, [&](std::int64_t i) {
                rv[i] = b[i] - t * v[i];
                return std::array<double, 1>{double(rv[i]) * rv[i]};
            })[0];
        });
        auto scaled_c = [&]() {
            for_bands(L.bands, threads_, L.par, [&](int, int a, int e) {
                for (std::int64_t i = a * S; i < e * S; ++i) x[i] = t * c[i];
            });
        };
        const double kr = opt_.kcycle_reduction;
        if (s2[0] <= kr * kr * bb) {  // residual reduced enough (to 0.15 by default): one step is enough
            scaled_c();
            return;
        }
        vstep(l, rv);  // c2 in L.x
        const auto s3 = reduce_bands<3>(L.bands, threads_, L.par, part_, [&](int, int a, int e, double* acc) {
            const auto s = sum_range<3>(a * S, e * S, [&](std::int64_t i) {
                const float v2 = stencil(eE, eN, dgp, x, i, S);
                return std::array<double, 3>{double(x[i]) * v[i], double(x[i]) * v2, double(x[i]) * rv[i]};
            });
            for (int m = 0; m < 3; ++m) acc[m] += s[m];
        });
        const double gamma = s3[0], beta = s3[1], alpha2 = s3[2];
        const double rho2 = beta - gamma * gamma / rho1;
        if (!(rho2 > 0.0)) {
            scaled_c();
            return;
        }
        const float a1 = static_cast<float>(alpha1 / rho1 - gamma * alpha2 / (rho1 * rho2));
        const float a2 = static_cast<float>(alpha2 / rho2);
        for_bands(L.bands, threads_, L.par, [&](int, int a, int e) {
            for (std::int64_t i = a * S; i < e * S; ++i) x[i] = a1 * c[i] + a2 * x[i];
        });
    }

    // Red-black Gauss-Seidel update of the cells of one colour in row r (padded row index).
    // Red cells are those with r + c even.
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

    // The banded wavefront of pre_pass and post_pass on level L: `n` stages, stage s one row
    // behind stage s - 1 (each stage reads its predecessor's values on the rows above and below).
    // Each band [a, e) first runs start(a, e), then streams its rows: stage(s, k, q) on row
    // q = r - s (k: the band), on the rows whose stencils stay inside the band, [a + s, e - 1 - s]
    // for s >= 1.  Then, stage by stage after a barrier each, the stage's rows at the band's two
    // edges.  No stage reads a row that a later stage has already rewritten, and every row is
    // visited in the same order for any thread count.
    template <class Start, class Stage>
    void wavefront(const Level& L, int n, Start&& start, Stage&& stage) {
        const Bands& B = L.bands;
        const int nb = B.count, nt = threads_;
        (void)nt;
#ifdef _OPENMP
#pragma omp parallel num_threads(nt) if (L.par && nt > 1 && nb > 1)
#endif
        {
#ifdef _OPENMP
#pragma omp for schedule(static)
#endif
            for (int k = 0; k < nb; ++k) {
                const int a = B.begin(k), e = B.end(k);
                start(a, e);
                for (int r = a; r < e + n - 1; ++r) {
                    if (r < e) stage(0, k, r);
                    for (int st = 1; st < n; ++st) {
                        const int q = r - st;
                        if (q >= a + st && q <= e - 1 - st) stage(st, k, q);
                    }
                }
            }
            for (int st = 1; st < n; ++st) {
#ifdef _OPENMP
#pragma omp for schedule(static)
#endif
                for (int k = 0; k < nb; ++k)
                    rows_outside(B.begin(k), B.end(k), B.begin(k) + st, B.end(k) - 1 - st, [&](int q) { stage(st, k, q); });
            }
        }
    }

    // Pre-smoothing from x = 0 (red, then black; on level 0 fine_pre_sweeps times) fused with
    // the residual and its restriction into the right-hand side of level l + 1.  Each band
    // streams its rows in one wavefront (red row r, black row r-1, ..., residual of the last
    // row); the rows whose stencil reaches into a neighbouring band are done after barriers,
    // stage by stage (wavefront).  Coarse row R gathers fine rows 2R-1 and 2R, which share a
    // band, always in that order.
    template <class BT>
    void pre_pass(int l, const BT* b) {
        Level& L = levels_[static_cast<std::size_t>(l)];
        Level& C = levels_[static_cast<std::size_t>(l + 1)];
        const std::int64_t S = L.S, CS = C.S;
        const int w = L.w;
        float* x = L.x.data();
        const float* eE = L.eE.data();
        const float* eN = L.eN.data();
        const float* dgp = L.diag();
        const float* invD = L.invD.data();
        float* cbase = C.b.data();
        auto red_from_zero = [&](int r) {  // every neighbour is black and still 0
            const std::int64_t row = static_cast<std::int64_t>(r) * S;
            for (std::int64_t i = row + 1 + ((r + 1) & 1); i <= row + w; i += 2)
                x[i] = static_cast<float>(b[i]) * invD[i];
        };
        auto residual_row = [&](int rr) {  // residual at the red cells of row rr (0 at black ones)
            const std::int64_t row = static_cast<std::int64_t>(rr) * S;
            // Red cell c = o + 1 + 2m (1-based column) restricts into coarse cell (c + 1) / 2 = m + 1:
            // a loop over m, contiguous in the coarse row, so that it vectorises.
            float* cb = cbase + static_cast<std::int64_t>((rr + 1) / 2) * CS + 1;
            const int o = (rr + 1) & 1;
            const std::int64_t i0 = row + 1 + o;
            const int nred = (w - o + 1) / 2;
            for (int m = 0; m < nred; ++m) {
                const std::int64_t i = i0 + 2 * m;
                cb[m] += static_cast<float>(b[i]) - stencil(eE, eN, dgp, x, i, S);
            }
        };
        // stages: red from 0, black, (red, black) per further sweep, residual
        const int n = 3 + 2 * (l == 0 ? std::max(0, opt_.fine_pre_sweeps - 1) : 0);
        wavefront(
            L, n,
            [&](int a, int e) {  // the coarse rows this band restricts into start from 0
                std::fill(cbase + static_cast<std::int64_t>((a + 1) / 2) * CS,
                          cbase + static_cast<std::int64_t>(e / 2 + 1) * CS, 0.0f);
            },
            [&](int st, int, int r) {
                if (st == 0)
                    red_from_zero(r);
                else if (st == n - 1)
                    residual_row(r);
                else
                    gs_row(L, b, r, st & 1);
            });
    }

    // Prolongation of the coarse correction fused with post-smoothing (black, then red; on
    // level 0 fine_post_sweeps times), in the same banded wavefront as pre_pass.  On level 0 (z given) also writes z = x in double
    // and returns {r . z, z . (previous contents of z)}.
    template <class BT>
    std::array<double, 2> post_pass(int l, const BT* b, double* z) {
        Level& L = levels_[static_cast<std::size_t>(l)];
        const Level& C = levels_[static_cast<std::size_t>(l + 1)];
        const std::int64_t S = L.S, CS = C.S;
        const int w = L.w;
        float* x = L.x.data();
        const float* invD = L.invD.data();
        const float* xcbase = C.x.data();
        auto prolong = [&](int r) {  // fine cells 2C - 1, 2C take coarse cell C (mask cells only)
            float* xf = x + static_cast<std::int64_t>(r) * S;
            const float* xc = xcbase + static_cast<std::int64_t>((r + 1) / 2) * CS;
            const float* id = invD + static_cast<std::int64_t>(r) * S;
            const int half = w / 2;
            for (int C = 1; C <= half; ++C) {  // branch-free, so that it vectorises
                const float v = xc[C];
                xf[2 * C - 1] += id[2 * C - 1] > 0.0f ? v : 0.0f;
                xf[2 * C] += id[2 * C] > 0.0f ? v : 0.0f;
            }
            if (w & 1) xf[w] += id[w] > 0.0f ? xc[(w + 1) / 2] : 0.0f;
        };
        const int nb = L.bands.count;
        if (z) part_.assign(static_cast<std::size_t>(nb) * 2, 0.0);
        double* part = part_.data();
        auto red_out = [&](int k, int r) {
            gs_row(L, b, r, 0);
            if (z) output_row(r, b, z, part + 2 * k);
        };
        // stages: prolongation, black, red, (black, red) per further sweep; the last red writes z
        const int n = 3 + 2 * (l == 0 ? std::max(0, opt_.fine_post_sweeps - 1) : 0);
        wavefront(L, n, [](int, int) {}, [&](int st, int k, int r) {
            if (st == 0)
                prolong(r);
            else if (st == n - 1)
                red_out(k, r);
            else
                gs_row(L, b, r, st & 1);
        });
        std::array<double, 2> d{0.0, 0.0};
        if (z) {
            for (int k = 0; k < nb; ++k) {
                d[0] += part[2 * k];
                d[1] += part[2 * k + 1];
            }
            zero_border_rows(z);
        }
        return d;
    }

    // z = x (double) on padded row r of level 0 (border columns 0); adds sum r z over the row
    // to acc[0] and sum z_old z to acc[1] (z's buffer holds the previous L p: flexible CG).
    template <class BT>
    void output_row(int r, const BT* rvec, double* z, double* acc) const {
        const Level& L = levels_[0];
        const std::int64_t row = static_cast<std::int64_t>(r) * L.S;
        const float* x = L.x.data();
        z[row] = 0.0;
        z[row + L.w + 1] = 0.0;
        const auto s = sum_range<2>(row + 1, row + L.w + 1, [&](std::int64_t i) {
            const double zi = static_cast<double>(x[i]);
            const double old = z[i];
            z[i] = zi;
            return std::array<double, 2>{static_cast<double>(rvec[i]) * zi, zi * old};
        });
        acc[0] += s[0];
        acc[1] += s[1];
    }

    void zero_border_rows(double* z) const {
        const Level& L = levels_[0];
        std::fill(z, z + L.S, 0.0);
        std::fill(z + static_cast<std::int64_t>(L.h + 1) * L.S, z + L.size, 0.0);
    }

    // Single-level hierarchy (a tiny problem): z = x row by row, serially.
    template <class BT>
    std::array<double, 2> output(const BT* r, double* z) {
        std::array<double, 2> d{0.0, 0.0};
        for (int row = 1; row <= levels_[0].h; ++row) output_row(row, r, z, d.data());
        zero_border_rows(z);
        return d;
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
