// One-pass scans of the inputs for the Python validators (monohead._validate): the checks on
// the normals and on the gradient-magnitude map as one parallel pass each, with no temporary
// arrays.  They only count and take maxima; Python decides (and, when something is wrong,
// reruns its own checks to word the error).  Plain C++17 (+ OpenMP), no Python types.
//
// Counts and maxima do not depend on the order of the pixels, so the results are identical
// for any thread count.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "parallel.hpp"

namespace monohead {

struct NormalScan {
    std::int64_t nonfinite = 0;   // mask pixels with a NaN or inf component
    std::int64_t facing = 0;      // finite mask pixels with Nz <= 0
    std::int64_t nz_range = 0;    // finite mask pixels with Nz outside [nz_lo, nz_hi]
    std::int64_t grazing = 0;     // remaining mask pixels with |p| or |q| > slope_limit
    double pmax = 0.0, qmax = 0.0;  // largest |p| = |Nx (-1/Nz)| and |q| over the mask (0: none)
};

// The orthographic checks of H x W x 3 normals (row-major, interleaved) inside `mask` (H x W,
// non-zero = inside), the slopes computed in double as the core computes them.
template <class T>
NormalScan scan_normals(const T* normals, const std::uint8_t* mask, int H, int W, double nz_lo, double nz_hi,
                        double slope_limit, int threads) {
    const Bands B = make_bands(H);  // image rows 0..H-1 as bands of rows 1..H
    std::vector<NormalScan> part(static_cast<std::size_t>(B.count));
    for_bands(B, threads, static_cast<std::int64_t>(H) * W >= kParallelMinCells, [&](int k, int a, int e) {
        NormalScan s;
        for (std::int64_t i = static_cast<std::int64_t>(a - 1) * W; i < static_cast<std::int64_t>(e - 1) * W; ++i) {
            if (!mask[i]) continue;
            const double nx = static_cast<double>(normals[3 * i]);
            const double ny = static_cast<double>(normals[3 * i + 1]);
            const double nz = static_cast<double>(normals[3 * i + 2]);
            if (!(std::isfinite(nx) && std::isfinite(ny) && std::isfinite(nz))) {
                ++s.nonfinite;
                continue;
            }
            if (!(nz > 0.0)) {
                ++s.facing;
                continue;
            }
            if (!(nz >= nz_lo && nz <= nz_hi)) {
                ++s.nz_range;
                continue;
            }
            const double inv = -1.0 / nz;
            const double p = std::abs(nx * inv), q = std::abs(ny * inv);
            if (!(p <= slope_limit && q <= slope_limit)) {
                ++s.grazing;
                continue;
            }
            s.pmax = std::max(s.pmax, p);
            s.qmax = std::max(s.qmax, q);
        }
        part[static_cast<std::size_t>(k)] = s;
    });
    NormalScan out;
    for (const auto& s : part) {
        out.nonfinite += s.nonfinite;
        out.facing += s.facing;
        out.nz_range += s.nz_range;
        out.grazing += s.grazing;
        out.pmax = std::max(out.pmax, s.pmax);
        out.qmax = std::max(out.qmax, s.qmax);
    }
    return out;
}

struct ValueScan {
    bool finite_nonnegative = true;  // every value finite and >= 0
    double max = 0.0;                // the largest value (meaningful when finite_nonnegative)
};

// Whether all n values are finite and >= 0, and their maximum (n >= 1).
template <class T>
ValueScan scan_nonnegative(const T* a, std::int64_t n, int threads) {
    const std::int64_t chunk = 65536;
    const int count = static_cast<int>((n + chunk - 1) / chunk);
    std::vector<ValueScan> part(static_cast<std::size_t>(count));
    (void)threads;
#ifdef _OPENMP
#pragma omp parallel for num_threads(threads) schedule(static) if (threads > 1 && count > 1)
#endif
    for (int k = 0; k < count; ++k) {
        ValueScan s;
        const std::int64_t i1 = std::min(n, (k + 1) * chunk);
        bool ok = true;
        double m = 0.0;
        for (std::int64_t i = k * chunk; i < i1; ++i) {
            const double v = static_cast<double>(a[i]);
            ok &= std::isfinite(v) & (v >= 0.0);  // no branch: the loop vectorises
            m = std::max(m, v);
        }
        s.finite_nonnegative = ok;
        s.max = m;
        part[static_cast<std::size_t>(k)] = s;
    }
    ValueScan out;
    for (const auto& s : part) {
        out.finite_nonnegative = out.finite_nonnegative && s.finite_nonnegative;
        out.max = std::max(out.max, s.max);
    }
    return out;
}

}  // namespace monohead
