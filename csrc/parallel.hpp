// Threads of the core, and the rule that keeps results independent of their number.
// Plain C++17 (+ OpenMP when the compiler has it), no Python types.
//
// Why OpenMP rather than std::thread: every multigrid pass is a few phases separated by
// barriers, run several hundred times per solve on levels of a few thousand to a few million
// cells.  OpenMP (libgomp, shipped with gcc) keeps a pool of threads and has cheap barriers;
// a std::thread version would have to rebuild both (and spawning threads per pass costs more
// than the pass on the coarse levels).  Without OpenMP the pragmas are ignored and the core
// runs single-threaded, with the same results.
//
// Determinism: every loop over a padded grid is cut into bands of whole rows whose height
// depends only on the grid (make_bands), never on the thread count; a reduction keeps one
// partial sum per band and adds the partial sums in band order.  Each band does the same
// floating-point operations in the same order whichever thread runs it, so results are
// bitwise identical for any number of threads.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace monohead {

// Whether the core was compiled with OpenMP (otherwise `threads` has no effect).
inline bool have_openmp() {
#ifdef _OPENMP
    return true;
#else
    return false;
#endif
}

// Rows 1..rows of a padded grid (masked_grid.hpp) in bands [begin(k), end(k)).  Band heights
// are even, so the two fine rows 2R-1, 2R of coarse row R always share a band (band k starts
// at the odd row 1 + k * height).
struct Bands {
    int rows = 0;
    int height = 2;
    int count = 0;
    int begin(int k) const { return 1 + k * height; }
    int end(int k) const { return std::min(1 + (k + 1) * height, rows + 1); }
};

// About 64 bands on large grids (enough to feed 16 threads 4 bands each), at least 8 rows
// each (the fused multigrid passes defer 2 to 4 rows per band to a second phase).
inline Bands make_bands(int rows) {
    Bands b;
    b.rows = rows;
    int h = (rows + 63) / 64;
    h = std::max(8, h + (h & 1));
    b.height = h;
    b.count = rows > 0 ? (rows + h - 1) / h : 0;
    return b;
}

// Grids below this many cells (about 180^2) run on one thread: a pass over them takes a few
// microseconds, little more than waking the other threads, and small images stay as robust
// on a busy machine as a serial solve.  Not higher: the K-cycle visits a level up to 2^l
// times per iteration, so levels left serial bound the speedup (at 65536, the serial levels
// of a 1024^2 head held about a quarter of a cycle's cell visits, which caps the speedup near
// 1.6x on any number of cores; at 32768 levels 0-2 of a 1024^2 head run in parallel, the
// fourth (11685 cells) and below serially).
// On a busy machine (threads descheduled at a barrier) every parallel pass costs more: use
// threads=1 there (README, "Threads of the core").
constexpr std::int64_t kParallelMinCells = 32768;

// f(k, row_begin, row_end) for every band, on up to `threads` threads when `parallel`.
template <class F>
inline void for_bands(const Bands& B, int threads, bool parallel, F&& f) {
    const int n = B.count;
#ifdef _OPENMP
#pragma omp parallel for num_threads(threads) schedule(static) if (parallel && threads > 1 && n > 1)
#endif
    for (int k = 0; k < n; ++k) f(k, B.begin(k), B.end(k));
    (void)threads;
    (void)parallel;
}

// Sums g(i) (a std::array<double, M> per index, g called for i0, i0 + 1, ... in order) over
// [i0, i1) in four interleaved partial sums per component, added as (s0 + s1) + (s2 + s3).
// One running sum would make every loop that carries a dot product wait on the latency of
// its additions (a chain of dependent adds, about 4 cycles each: as slow as streaming the
// vectors from memory); four chains let the loads run at full speed.  The order depends only
// on [i0, i1), i.e. on the band, never on the thread count.
template <int M, class G>
inline std::array<double, M> sum_range(std::int64_t i0, std::int64_t i1, G&& g) {
    std::array<double, M> s0{}, s1{}, s2{}, s3{};
    std::int64_t i = i0;
    for (; i + 4 <= i1; i += 4) {
        const std::array<double, M> a = g(i);
        const std::array<double, M> b = g(i + 1);
        const std::array<double, M> c = g(i + 2);
        const std::array<double, M> d = g(i + 3);
        for (int m = 0; m < M; ++m) {
            s0[m] += a[m];
            s1[m] += b[m];
            s2[m] += c[m];
            s3[m] += d[m];
        }
    }
    for (; i < i1; ++i) {
        const std::array<double, M> a = g(i);
        for (int m = 0; m < M; ++m) s0[m] += a[m];
    }
    std::array<double, M> out;
    for (int m = 0; m < M; ++m) out[m] = (s0[m] + s1[m]) + (s2[m] + s3[m]);
    return out;
}

// Runs f(k, row_begin, row_end, acc) for every band, acc pointing to the band's M partial sums
// (zeroed), and returns the M sums, each added over the bands in band order.  `scratch` is
// any vector (resized here).
template <int M, class F>
inline std::array<double, M> reduce_bands(const Bands& B, int threads, bool parallel,
                                          std::vector<double>& scratch, F&& f) {
    const int n = B.count;
    scratch.assign(static_cast<std::size_t>(n) * M, 0.0);
    double* part = scratch.data();
    for_bands(B, threads, parallel, [&](int k, int a, int e) { f(k, a, e, part + static_cast<std::size_t>(k) * M); });
    std::array<double, M> out{};
    for (int k = 0; k < n; ++k)
        for (int m = 0; m < M; ++m) out[m] += part[static_cast<std::size_t>(k) * M + m];
    return out;
}

}  // namespace monohead
