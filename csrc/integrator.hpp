// The normal integrator: WLS system on a mask, a solver set up once (multigrid hierarchy,
// Jacobi diagonal or sparse Cholesky factor), and solves for many normal maps.
// Plain C++17 + Eigen, no Python types.
//
// Gauge (conventions.md): the solution is unique up to one constant per 4-connected component
// of the mask.  The right-hand side is projected to zero sum per component (it is in exact
// arithmetic), the iterative solvers work on the consistent singular system, and the result is
// shifted to mean 0 over each component.  Isolated pixels (no neighbour in the mask) are
// components of one pixel and so get depth 0.  Pixels outside the mask get NaN.
#pragma once

#include <Eigen/Sparse>
#include <Eigen/SparseCholesky>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <limits>
#include <algorithm>
#include <array>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "masked_grid.hpp"
#include "multigrid.hpp"
#include "parallel.hpp"
#include "pcg.hpp"
#include "robust.hpp"
#include "wls_system.hpp"

namespace monohead {

enum class Method { Multigrid, Jacobi, Direct };

inline Method parse_method(const std::string& m) {
    if (m == "mg") return Method::Multigrid;
    if (m == "jacobi") return Method::Jacobi;
    if (m == "direct") return Method::Direct;
    throw std::invalid_argument("method must be one of 'mg', 'jacobi', 'direct'; got '" + m + "'");
}

struct SolveReport {
    int iterations = 0;
    double residual = 0.0;
    bool converged = true;
    double assembly_seconds = 0.0;  // right-hand side (the matrix is assembled at setup)
    double solve_seconds = 0.0;
};

// CSR form of the system over the mask pixels in row-major (raster) order.
struct CsrSystem {
    std::vector<std::int64_t> indptr;
    std::vector<std::int32_t> indices;
    std::vector<double> data;
    std::vector<double> rhs;
};

inline double seconds_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Threads: setup and solves run on up to `threads` threads (OpenMP, parallel.hpp); every
// result is bitwise identical for any thread count.  Inputs (weights, normals) may be float or
// double: they are read in place and converted cell by cell; the system and the depth are
// double.
class Integrator {
   public:
    // mask: H x W (non-zero = inside, must not be empty); Wmap: H x W gradient magnitudes
    // (float or double) or null for w = 1; lam >= 0; threads >= 1.
    template <class T>
    Integrator(int H, int W, const std::uint8_t* mask, const T* Wmap, double lam, Method method,
               const MgOptions& mg_options = {}, int threads = 1)
        : method_(method), threads_(std::max(1, threads)) {
        auto t0 = std::chrono::steady_clock::now();
        grid_ = make_padded_grid(mask, H, W);
        mask_.resize(static_cast<std::size_t>(H) * W);
        for (std::size_t i = 0; i < mask_.size(); ++i) mask_[i] = mask[i] ? 1 : 0;
        ew_ = build_edge_weights(grid_, mask_.data(), Wmap, lam, threads_);
        setup(t0, mg_options);
    }

   private:
    // The rest of construction once the edge weights are known: components and solver setup.
    void setup(std::chrono::steady_clock::time_point t0, const MgOptions& mg_options) {
        mg_options_ = mg_options;
        pmask_.resize(static_cast<std::size_t>(grid_.size));
        scatter_to_padded(grid_, mask_.data(), pmask_.data());
        const Components comp = find_components(grid_, pmask_.data(), threads_);
        ncomp_ = comp.count;
        comp_size_ = comp.size;
        // One component of more than one pixel (the usual case): every mask cell has a
        // neighbour, so "diagonal > 0" marks the mask and the label array is not needed.
        single_ = ncomp_ == 1 && comp_size_[0] > 1 && method_ != Method::Direct;
        if (!single_) fill_labels(grid_, comp, labels_, threads_);
        assembly_seconds_ = seconds_since(t0);

        t0 = std::chrono::steady_clock::now();
        if (method_ == Method::Multigrid) {
            mg_ = std::make_unique<Multigrid>(grid_, ew_.eE.data(), ew_.eN.data(), mg_options, threads_);
        } else if (method_ == Method::Jacobi) {
            invdiag_.assign(static_cast<std::size_t>(grid_.size), 0.0);
            for (std::int64_t i = grid_.first(); i < grid_.last(); ++i) {
                const double d = laplacian_diag(ew_.eE.data(), ew_.eN.data(), i, grid_.S);
                invdiag_[i] = d > 0.0 ? 1.0 / d : 0.0;
            }
        } else {
            factorize_direct();
        }
        setup_seconds_ = seconds_since(t0);
    }

   public:
    int height() const { return grid_.H; }
    int width() const { return grid_.W; }
    int num_components() const { return ncomp_; }
    std::int64_t num_unknowns() const {
        std::int64_t n = 0;
        for (auto m : mask_) n += m;
        return n;
    }
    int num_levels() const { return mg_ ? mg_->num_levels() : 0; }
    int threads() const { return threads_; }
    void set_threads(int t) {
        threads_ = std::max(1, t);
        if (mg_) mg_->set_threads(threads_);
    }
    double assembly_seconds() const { return assembly_seconds_; }
    double setup_seconds() const { return setup_seconds_; }

    // Bytes held between solves (system, hierarchy or factor, labels) plus the work arrays of
    // one solve.
    std::size_t bytes() const {
        const std::size_t n = static_cast<std::size_t>(grid_.size);
        std::size_t b = mask_.size() + pmask_.size() + sizeof(double) * 2 * n + sizeof(std::int32_t) * labels_.size();
        if (mg_) b += mg_->bytes();
        b += sizeof(double) * invdiag_.size();
        if (llt_) b += static_cast<std::size_t>(llt_nnz_) * (sizeof(double) + sizeof(int));
        b += sizeof(double) * 5 * n;  // x, b, r, p, Ap (= z) during a solve
        return b;
    }

    // Integrate one normal map (H x W x 3, row-major interleaved, float or double, Nz > 0
    // inside the mask).  x0: optional H x W initial guess (iterative methods).  out: H x W
    // depth (double).
    template <class T>
    SolveReport solve(const T* normals, const double* x0, double tol, int maxiter, double* out) {
        return solve_with([&](double* b) { build_rhs(grid_, ew_, normals, mask_.data(), b, threads_); }, x0, tol,
                          maxiter, out);
    }

    // Perspective: the unknown is the log-depth l = log z; slopes from perspective_slopes
    // (the normals must face the camera: d > 0 inside the mask).  out: H x W log-depth with
    // mean 0 over each component (geometric mean depth 1).
    SolveReport solve_perspective(const double* normals, const Pinhole& cam, const double* x0, double tol, int maxiter,
                                  double* out) {
        return solve_with([&](double* b) { build_rhs_perspective(normals, cam, b); }, x0, tol, maxiter, out);
    }

    // The general solve: fill(b) writes the right-hand side on the padded grid.
    template <class FillRhs>
    SolveReport solve_with(FillRhs&& fill, const double* x0, double tol, int maxiter, double* out) {
        SolveReport rep;
        auto t0 = std::chrono::steady_clock::now();
        const auto bbuf = grid_array(grid_, threads_), xbuf = grid_array(grid_, threads_);
        double* b = bbuf.get();
        double* x = xbuf.get();
        fill(b);
        project_mean_zero(b);
        if (x0) gather_mask(grid_, mask_.data(), x0, x);
        rep.assembly_seconds = seconds_since(t0);

        t0 = std::chrono::steady_clock::now();
        if (maxiter < 0) maxiter = std::numeric_limits<int>::max();
        SolveStats st;
        if (method_ == Method::Multigrid) {
            st = pcg(
                grid_, ew_, b, x, tol, maxiter,
                [this](const double* r, double* z, double* zAp) { return mg_->apply(r, z, zAp); }, threads_,
                x0 == nullptr);
        } else if (method_ == Method::Jacobi) {
            const std::int64_t S = grid_.S;
            const double* inv = invdiag_.data();
            const Bands B = make_bands(grid_.h);
            const bool par = grid_.size >= kParallelMinCells;
            std::vector<double> part;
            st = pcg(
                grid_, ew_, b, x, tol, maxiter,
                [&](const double* r, double* z, double* zAp) {
                    const auto d = reduce_bands<2>(B, threads_, par, part, [&](int, int a, int e, double* acc) {
                        double s0 = 0.0, s1 = 0.0;  // local sums: acc may alias z (kept in registers)
                        for (std::int64_t i = a * S; i < e * S; ++i) {
                            const double zi = inv[i] * r[i];
                            s1 += zi * z[i];
                            z[i] = zi;
                            s0 += r[i] * zi;
                        }
                        acc[0] += s0;
                        acc[1] += s1;
                    });
                    *zAp = d[1];
                    return d[0];
                },
                threads_, x0 == nullptr);
        } else {
            st = solve_direct(b, x);
        }
        // Gauge: mean 0 per component.  One component: the mean is subtracted while writing out.
        double shift = 0.0;
        if (single_)
            shift = mask_mean(x);
        else
            project_mean_zero(x);
        rep.iterations = st.iterations;
        rep.residual = st.residual;
        rep.converged = st.converged;

        // Write out: NaN outside the mask.
        const double nan = std::numeric_limits<double>::quiet_NaN();
        const Bands Bimg = make_bands(grid_.H);
        for_bands(Bimg, threads_, static_cast<std::int64_t>(grid_.H) * grid_.W >= kParallelMinCells,
                  [&](int, int a, int e) {
                      for (int ir = a - 1; ir < e - 1; ++ir) {  // image rows
                          double* orow = out + static_cast<std::int64_t>(ir) * grid_.W;
                          std::fill(orow, orow + grid_.W, nan);
                          const int r = ir - grid_.r0;  // box row
                          if (r < 0 || r >= grid_.h) continue;
                          const std::int64_t i0 = grid_.index(r, 0);
                          const std::uint8_t* mrow = mask_.data() + static_cast<std::int64_t>(ir) * grid_.W + grid_.c0;
                          for (int c = 0; c < grid_.w; ++c)
                              if (mrow[c]) orow[grid_.c0 + c] = x[i0 + c] - shift;
                      }
                  });
        rep.solve_seconds = seconds_since(t0);
        return rep;
    }

    // The system in CSR over the mask pixels in raster order (unknown k = k-th mask pixel), for
    // one normal map.  Row k holds, in column order: up, left, diagonal, right, down.
    template <class T>
    CsrSystem csr(const T* normals) const {
        return csr_with([&](double* b) { build_rhs(grid_, ew_, normals, mask_.data(), b, threads_); });
    }
    CsrSystem csr_perspective(const double* normals, const Pinhole& cam) const {
        return csr_with([&](double* b) { build_rhs_perspective(normals, cam, b); });
    }

    template <class FillRhs>
    CsrSystem csr_with(FillRhs&& fill) const {
        const PaddedGrid& g = grid_;
        const std::int64_t n = g.size, S = g.S;
        std::vector<double> b(static_cast<std::size_t>(n));
        fill(b.data());
        std::vector<std::int32_t> id(static_cast<std::size_t>(n), -1);
        std::int32_t k = 0;
        std::vector<std::uint8_t> pm(static_cast<std::size_t>(n));
        scatter_to_padded(g, mask_.data(), pm.data());
        for (std::int64_t i = g.first(); i < g.last(); ++i)
            if (pm[i]) id[i] = k++;
        CsrSystem out;
        out.indptr.reserve(static_cast<std::size_t>(k) + 1);
        out.indptr.push_back(0);
        out.rhs.reserve(static_cast<std::size_t>(k));
        const double* eE = ew_.eE.data();
        const double* eN = ew_.eN.data();
        for (std::int64_t i = g.first(); i < g.last(); ++i) {
            if (!pm[i]) continue;
            auto push = [&](std::int64_t j, double v) {
                out.indices.push_back(id[j]);
                out.data.push_back(v);
            };
            if (eN[i] > 0.0) push(i - S, -eN[i]);
            if (eE[i - 1] > 0.0) push(i - 1, -eE[i - 1]);
            push(i, laplacian_diag(eE, eN, i, S));
            if (eE[i] > 0.0) push(i + 1, -eE[i]);
            if (eN[i + S] > 0.0) push(i + S, -eN[i + S]);
            out.indptr.push_back(static_cast<std::int64_t>(out.indices.size()));
            out.rhs.push_back(b[i]);
        }
        return out;
    }

    // The slopes (p, q) of pixel (r, c), raster index k, of the robust and prior solves: from
    // orthographic normals (cam null: p = -Nx/Nz, q = -Ny/Nz) or perspective ones
    // (perspective_slopes).
    static void slopes_at(const double* normals, const Pinhole* cam, int r, int c, std::int64_t k, double& p,
                          double& q) {
        if (cam) {
            perspective_slopes(normals + 3 * k, *cam, r, c, p, q);
        } else {
            const double* n3 = normals + 3 * k;
            p = -n3[0] / n3[2];
            q = -n3[1] / n3[2];
        }
    }

    // Discontinuity-preserving solve (robust.hpp): the smooth WLS solve (or x0), then
    // majorize-minimize reweightings of the Cauchy energy, each a warm-started multigrid-PCG of
    // opt.inner_iterations iterations on the reweighted system, whose hierarchy is rebuilt from
    // the new weights.  Needs method "mg".  The energy decreases at every reweighting
    // (rep.energies).  normals: H x W x 3, orthographic (cam null) or perspective.
    SolveReport solve_robust(const double* normals, const Pinhole* cam, const RobustOptions& opt, const double* x0,
                             double tol, int maxiter, double* out, RobustReport& rrep) {
        if (method_ != Method::Multigrid) throw std::invalid_argument("the robust solve needs method 'mg'");
        auto slopes = [&](int r, int c, std::int64_t k, double& p, double& q) { slopes_at(normals, cam, r, c, k, p, q); };
        const EdgeSlopes es = edge_slopes(grid_, ew_, mask_.data(), slopes);
        // The smooth solve (also the answer when the residuals are all zero).
        std::vector<double> h(static_cast<std::size_t>(grid_.size), 0.0);
        // The reweightings below run a few CG steps each, so the path of the iteration follows the
        // preconditioner; the robust defaults (3 steps, energy_tol 1e-2) were tuned with the
        // K-cycle rule 0.25 and one smoothing sweep on level 0, which the robust solve keeps
        // (smooth start and reweightings; the plain solves use 0.15 and two sweeps, MgOptions):
        // with 0.15 the energy of tests/test_sharpness.py's step stalls on a plateau (0.20
        // instead of 0.05) where the stopping rule fires, and with two sweeps the perspective
        // solve of the 1024^2 head+neck (benchmarks/diligent.py) drifts after about 20
        // reweightings: a few pixels that the Cauchy weights all but cut off take log-depths
        // beyond float64's range at an energy cost of 1e-7 (tests/test_sharpness.py).
        constexpr float kRobustKcycle = 0.25f;
        constexpr int kRobustSweeps = 1;
        struct KcycleRule {  // sets the rule and sweeps of mg_ for the smooth solve, restores them after
            Multigrid& mg;
            float saved;
            std::array<int, 2> sweeps;
            KcycleRule(Multigrid& m, float r, int n) : mg(m), saved(m.kcycle_reduction()), sweeps(m.fine_sweeps()) {
                mg.set_kcycle_reduction(r);
                mg.set_fine_sweeps(n, n);
            }
            ~KcycleRule() {
                mg.set_kcycle_reduction(saved);
                mg.set_fine_sweeps(sweeps[0], sweeps[1]);
            }
        };
        SolveReport rep;
        {
            KcycleRule rule(*mg_, kRobustKcycle, kRobustSweeps);
            rep = solve_with([&](double* b) { rhs_from_edge_slopes(grid_, ew_, es, b); }, x0, tol, maxiter, out);
        }
        rrep = RobustReport{};
        rrep.cg_iterations = rep.iterations;
        auto t0 = std::chrono::steady_clock::now();
        gather_mask(grid_, mask_.data(), out, h.data());
        std::vector<double> rE, rN, b(static_cast<std::size_t>(grid_.size));
        edge_residuals(grid_, ew_, es, h.data(), rE, rN);
        const double sigma = opt.sharpness > 0.0 ? robust_scale(grid_, ew_, rE, rN) / opt.sharpness : 0.0;
        rrep.scale = sigma;
        if (!(sigma > 0.0) || !std::isfinite(sigma)) {
            rrep.converged = true;
            return rep;
        }
        rrep.energies.push_back(cauchy_energy(grid_, ew_, rE, rN, sigma));
        EdgeWeights ew;
        MgOptions robust_mg = mg_options_;
        robust_mg.kcycle_reduction = kRobustKcycle;
        robust_mg.fine_pre_sweeps = robust_mg.fine_post_sweeps = kRobustSweeps;
        // The reweightings keep the hierarchy their defaults were tuned with (the summed coarse
        // weights, no weak-edge sweeps): with the harmonic coarse weights the 3-step inner solves
        // take another path, and DiLiGenT harvest's MADE (tests/test_sharpness.py) rose from
        // below 1 mm to 1.18 mm.
        robust_mg.harmonic = false;
        robust_mg.weak_sweeps = 0;
        for (int it = 0; it < opt.max_reweightings; ++it) {
            cauchy_weights(grid_, ew_, rE, rN, sigma, ew);
            Multigrid mg(grid_, ew.eE.data(), ew.eN.data(), robust_mg, threads_);
            rhs_from_edge_slopes(grid_, ew, es, b.data());
            project_mean_zero(b.data());
            const SolveStats st = pcg(grid_, ew, b.data(), h.data(), 1e-15, opt.inner_iterations,
                                      [&mg](const double* r, double* z, double* zAp) { return mg.apply(r, z, zAp); },
                                      threads_);
            project_mean_zero(h.data());
            rrep.cg_iterations += st.iterations;
            ++rrep.reweightings;
            edge_residuals(grid_, ew_, es, h.data(), rE, rN);
            const double e_new = cauchy_energy(grid_, ew_, rE, rN, sigma);
            const double drop = rrep.energies.back() - e_new;
            rrep.energies.push_back(e_new);
            if (drop <= opt.energy_tol * e_new) {
                rrep.converged = true;
                break;
            }
        }
        scatter_mask(grid_, mask_.data(), h.data(), out);
        rep.iterations = rrep.cg_iterations;
        rep.converged = rrep.converged;
        rep.solve_seconds += seconds_since(t0);
        return rep;
    }

    // Smooth solve fused with a depth prior: minimise
    //   sum_e w_e (h_j - h_i - g_e)^2 + sum_i lambda_i (h_i - t_i)^2,
    // whose normal equations are (L + D) h = b + D t with D = diag(lambda).  wprior (H x W, >= 0;
    // 0 = no prior at that pixel) is lambda, tprior (H x W, read where wprior > 0) the prior's
    // value t of the unknown: height, or log-depth in perspective.  normals as in solve_robust.
    // Needs method "mg".  Solved by flexible CG on L + D (pcg.hpp) preconditioned by the
    // multigrid of L + D, the diagonal coarsened with the edges.  Components of the mask without
    // any prior pixel keep the orthographic gauge (right-hand side projected to zero sum, result
    // shifted to mean 0 there).
    SolveReport solve_prior(const double* normals, const Pinhole* cam, const double* wprior, const double* tprior,
                            const double* x0, double tol, int maxiter, double* out) {
        if (method_ != Method::Multigrid) throw std::invalid_argument("the prior solve needs method 'mg'");
        SolveReport rep;
        auto t0 = std::chrono::steady_clock::now();
        const std::int64_t n = grid_.size, lo = grid_.first(), hi = grid_.last();
        std::vector<double> b(static_cast<std::size_t>(n)), x(static_cast<std::size_t>(n), 0.0),
            D(static_cast<std::size_t>(n), 0.0), T(static_cast<std::size_t>(n), 0.0);
        build_rhs_with(grid_, ew_, mask_.data(),
                       [&](int r, int c, std::int64_t k, double& p, double& q) { slopes_at(normals, cam, r, c, k, p, q); },
                       b.data());
        for_box_pixels(grid_, [&](int, int, std::int64_t src, std::int64_t i) {
            if (mask_[src] && wprior[src] > 0.0) {
                D[i] = wprior[src];
                T[i] = tprior[src];
                b[i] += D[i] * T[i];
            }
        });
        if (x0) gather_mask(grid_, mask_.data(), x0, x.data());
        // Components without prior pixels: consistent singular blocks, gauge mean 0.
        pvector<std::int32_t> labels;
        int ncomp = 1;
        {
            std::vector<std::uint8_t> pm8(static_cast<std::size_t>(n));
            scatter_to_padded(grid_, mask_.data(), pm8.data());
            ncomp = label_components(grid_, pm8.data(), labels);
        }
        std::vector<double> csum(static_cast<std::size_t>(ncomp)), ccount(static_cast<std::size_t>(ncomp));
        std::vector<std::uint8_t> free(static_cast<std::size_t>(ncomp), 1);
        for (std::int64_t i = lo; i < hi; ++i)
            if (labels[i] >= 0 && D[i] > 0.0) free[labels[i]] = 0;
        auto project_free = [&](double* v) {
            std::fill(csum.begin(), csum.end(), 0.0);
            std::fill(ccount.begin(), ccount.end(), 0.0);
            for (std::int64_t i = lo; i < hi; ++i)
                if (labels[i] >= 0 && free[labels[i]]) {
                    csum[labels[i]] += v[i];
                    ccount[labels[i]] += 1.0;
                }
            for (std::int64_t i = lo; i < hi; ++i)
                if (labels[i] >= 0 && free[labels[i]]) v[i] -= csum[labels[i]] / ccount[labels[i]];
        };
        project_free(b.data());
        rep.assembly_seconds = seconds_since(t0);
        t0 = std::chrono::steady_clock::now();
        if (maxiter < 0) maxiter = std::numeric_limits<int>::max();
        Multigrid mgd(grid_, ew_.eE.data(), ew_.eN.data(), mg_options_, threads_, D.data());
        const SolveStats st = pcg(
            grid_, ew_, b.data(), x.data(), tol, maxiter,
            [&mgd](const double* r, double* z, double* zAp) { return mgd.apply(r, z, zAp); }, threads_, false,
            D.data());
        project_free(x.data());
        rep.iterations = st.iterations;
        rep.residual = st.residual;
        rep.converged = st.converged;
        const double nan = std::numeric_limits<double>::quiet_NaN();
        std::fill(out, out + static_cast<std::int64_t>(grid_.H) * grid_.W, nan);
        scatter_mask(grid_, mask_.data(), x.data(), out);
        rep.solve_seconds = seconds_since(t0);
        return rep;
    }

    // Right-hand side of the perspective system (padded b).
    void build_rhs_perspective(const double* normals, const Pinhole& cam, double* b) const {
        build_rhs_with(grid_, ew_, mask_.data(),
                       [&](int r, int c, std::int64_t k, double& p, double& q) {
                           perspective_slopes(normals + 3 * k, cam, r, c, p, q);
                       },
                       b, threads_);
    }

   private:
    using SpMat = Eigen::SparseMatrix<double>;
    Method method_;
    int threads_ = 1;
    PaddedGrid grid_;
    pvector<std::uint8_t> mask_;  // H x W, 0/1
    EdgeWeights ew_;
    pvector<std::uint8_t> pmask_;   // padded: 1 on mask cells
    pvector<std::int32_t> labels_;  // padded: component of each mask cell, -1 elsewhere
    std::vector<std::int64_t> comp_size_;
    int ncomp_ = 0;
    bool single_ = false;  // one component: labels_ dropped after setup
    double assembly_seconds_ = 0.0, setup_seconds_ = 0.0;
    std::unique_ptr<Multigrid> mg_;
    MgOptions mg_options_;
    std::vector<double> invdiag_;
    std::unique_ptr<Eigen::SimplicialLLT<SpMat>> llt_;
    std::vector<std::int32_t> direct_id_;  // padded cell -> unknown of the pinned system, or -1
    std::int64_t llt_nnz_ = 0;

    // Mean of v over the mask when it is one component (single_; v is 0 outside the mask).
    double mask_mean(const double* v) const {
        const std::int64_t S = grid_.S;
        std::vector<double> part;
        const double sum = reduce_bands<1>(make_bands(grid_.h), threads_, grid_.size >= kParallelMinCells, part,
                                           [&](int, int a, int e, double* acc) {
                                               acc[0] += sum_range<1>(a * S, e * S, [&](std::int64_t i) {
                                                   return std::array<double, 1>{v[i]};
                                               })[0];
                                           })[0];
        return sum / double(comp_size_[0]);
    }

    void project_mean_zero(double* v) const {
        if (single_) {
            const std::int64_t S = grid_.S;
            const std::uint8_t* pm = pmask_.data();
            const double mean = mask_mean(v);
            for_bands(make_bands(grid_.h), threads_, grid_.size >= kParallelMinCells, [&](int, int a, int e) {
                for (std::int64_t i = a * S; i < e * S; ++i)
                    if (pm[i]) v[i] -= mean;
            });
            return;
        }
        std::vector<double> sum(static_cast<std::size_t>(ncomp_), 0.0);
        const std::int64_t lo = grid_.first(), hi = grid_.last();
        for (std::int64_t i = lo; i < hi; ++i)
            if (labels_[i] >= 0) sum[labels_[i]] += v[i];
        for (int c = 0; c < ncomp_; ++c) sum[c] /= double(comp_size_[c]);
        for (std::int64_t i = lo; i < hi; ++i)
            if (labels_[i] >= 0) v[i] -= sum[labels_[i]];
    }

    // Sparse Cholesky of the system with the first pixel of every component pinned to 0
    // (removing that row and column makes each block SPD).
    void factorize_direct() {
        const std::int64_t n = grid_.size, S = grid_.S;
        direct_id_.assign(static_cast<std::size_t>(n), -1);
        std::vector<std::uint8_t> pinned(static_cast<std::size_t>(ncomp_), 0);
        std::int32_t k = 0;
        for (std::int64_t i = grid_.first(); i < grid_.last(); ++i) {
            const int c = labels_[i];
            if (c < 0) continue;
            if (!pinned[c]) {
                pinned[c] = 1;
                continue;
            }
            direct_id_[i] = k++;
        }
        std::vector<Eigen::Triplet<double>> t;
        t.reserve(static_cast<std::size_t>(k) * 3);
        const double* eE = ew_.eE.data();
        const double* eN = ew_.eN.data();
        for (std::int64_t i = grid_.first(); i < grid_.last(); ++i) {
            const std::int32_t a = direct_id_[i];
            if (a < 0) continue;
            t.emplace_back(a, a, laplacian_diag(eE, eN, i, S));
            // Lower triangle only (SimplicialLLT reads the lower part).
            if (eE[i] > 0.0 && direct_id_[i + 1] >= 0) t.emplace_back(direct_id_[i + 1], a, -eE[i]);
            if (eN[i + S] > 0.0 && direct_id_[i + S] >= 0) t.emplace_back(direct_id_[i + S], a, -eN[i + S]);
        }
        SpMat A(k, k);
        A.setFromTriplets(t.begin(), t.end());
        llt_ = std::make_unique<Eigen::SimplicialLLT<SpMat>>();
        if (k > 0) {
            llt_->compute(A);
            if (llt_->info() != Eigen::Success)
                throw std::runtime_error("sparse Cholesky factorisation failed");
            llt_nnz_ = llt_->matrixL().nestedExpression().nonZeros();
        }
    }

    SolveStats solve_direct(const double* b, double* x) const {
        const std::int64_t lo = grid_.first(), hi = grid_.last();
        SolveStats st;
        const Eigen::Index k = llt_->rows();
        Eigen::VectorXd rhs(k);
        for (std::int64_t i = lo; i < hi; ++i)
            if (direct_id_[i] >= 0) rhs[direct_id_[i]] = b[i];
        Eigen::VectorXd sol = k > 0 ? Eigen::VectorXd(llt_->solve(rhs)) : Eigen::VectorXd(0);
        for (std::int64_t i = lo; i < hi; ++i) x[i] = direct_id_[i] >= 0 ? sol[direct_id_[i]] : 0.0;
        // Report the true relative residual like the iterative methods.
        std::vector<double> Ax(static_cast<std::size_t>(grid_.size), 0.0);
        laplacian_apply(grid_, ew_.eE.data(), ew_.eN.data(), x, Ax.data());
        double rr = 0.0, bb = 0.0;
        for (std::int64_t i = lo; i < hi; ++i) {
            rr += (b[i] - Ax[i]) * (b[i] - Ax[i]);
            bb += b[i] * b[i];
        }
        st.residual = bb > 0.0 ? std::sqrt(rr / bb) : 0.0;
        st.converged = true;
        return st;
    }
};

}  // namespace monohead
