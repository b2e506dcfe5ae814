// Masked pixel grid: bounding-box crop with a one-pixel zero border, pixel <-> unknown
// indexing and 4-connected components.  Plain C++17, no Python types.
//
// Layout: the mask's bounding box of h x w pixels is stored in a padded array of
// (h + 2) x (w + 2) cells, row-major with stride S = w + 2.  Interior cell (r, c) of the box
// (0-based) lives at flat index (r + 1) * S + (c + 1).  Border cells are never in the mask, so
// stencil loops over the padded array need no bounds checks.
#pragma once

#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <vector>

#include "parallel.hpp"
#include "pool.hpp"

namespace monohead {

struct PaddedGrid {
    int H = 0, W = 0;     // full image size
    int r0 = 0, c0 = 0;   // top-left pixel of the bounding box in the image
    int h = 0, w = 0;     // bounding-box size
    int S = 0;            // stride of the padded array (w + 2)
    std::int64_t size = 0;  // (h + 2) * S

    std::int64_t index(int r, int c) const {  // r, c: box coordinates (0-based)
        return static_cast<std::int64_t>(r + 1) * S + (c + 1);
    }
    std::int64_t first() const { return S; }                               // first cell of row 0
    std::int64_t last() const { return static_cast<std::int64_t>(h + 1) * S; }  // one past row h-1
};

// The padded grid of the bounding box of `mask` (H x W, row-major, non-zero = inside).
// Throws std::invalid_argument for an empty mask.
inline PaddedGrid make_padded_grid(const std::uint8_t* mask, int H, int W) {
    int rmin = H, rmax = -1, cmin = W, cmax = -1;
    for (int r = 0; r < H; ++r) {
        const std::uint8_t* row = mask + static_cast<std::int64_t>(r) * W;
        for (int c = 0; c < W; ++c) {
            if (row[c]) {
                if (r < rmin) rmin = r;
                if (r > rmax) rmax = r;
                if (c < cmin) cmin = c;
                if (c > cmax) cmax = c;
            }
        }
    }
    if (rmax < 0) throw std::invalid_argument("mask is empty");
    PaddedGrid g;
    g.H = H;
    g.W = W;
    g.r0 = rmin;
    g.c0 = cmin;
    g.h = rmax - rmin + 1;
    g.w = cmax - cmin + 1;
    g.S = g.w + 2;
    g.size = static_cast<std::int64_t>(g.h + 2) * g.S;
    return g;
}

// Copy the box of an H x W image into a padded array (border and outside-box cells zero).
template <class Out, class In>
void scatter_to_padded(const PaddedGrid& g, const In* img, Out* padded) {
    std::fill(padded, padded + g.size, Out(0));
    for (int r = 0; r < g.h; ++r) {
        const In* src = img + static_cast<std::int64_t>(r + g.r0) * g.W + g.c0;
        Out* dst = padded + g.index(r, 0);
        for (int c = 0; c < g.w; ++c) dst[c] = static_cast<Out>(src[c]);
    }
}

// f(ir, ic, src, i) for every pixel of the bounding box, row by row: image row ir and column ic,
// raster index src = ir * W + ic in the H x W image, and padded cell i.
template <class F>
void for_box_pixels(const PaddedGrid& g, F&& f) {
    for (int r = 0; r < g.h; ++r) {
        const int ir = r + g.r0;
        const std::int64_t src0 = static_cast<std::int64_t>(ir) * g.W + g.c0;
        const std::int64_t i0 = g.index(r, 0);
        for (int c = 0; c < g.w; ++c) f(ir, c + g.c0, src0 + c, i0 + c);
    }
}

// The mask pixels of an H x W image into their padded cells (other cells untouched).
template <class T>
void gather_mask(const PaddedGrid& g, const std::uint8_t* mask, const T* img, T* cells) {
    for_box_pixels(g, [&](int, int, std::int64_t src, std::int64_t i) {
        if (mask[src]) cells[i] = img[src];
    });
}

// The padded cells of the mask pixels into an H x W image (other pixels untouched).
template <class T>
void scatter_mask(const PaddedGrid& g, const std::uint8_t* mask, const T* cells, T* img) {
    for_box_pixels(g, [&](int, int, std::int64_t src, std::int64_t i) {
        if (mask[src]) img[src] = cells[i];
    });
}

// Label the 4-connected components of the cells where `active` is non-zero.  Labels are
// 0..n-1 in raster order of first appearance; inactive cells get -1.  Returns n.
// `active` and `labels` are padded arrays of g.size cells (border inactive).
//
// Union-find in which the root of a set is always its smallest cell index, i.e. the set's first
// cell in raster order; so the labels are the ranks of the roots.  Rows run in bands on up to
// `threads` threads: each band links its own cells, the links across band edges follow on one
// thread, then every cell finds its root and the roots are numbered band by band.  The labels
// do not depend on the thread count.
inline int label_components(const PaddedGrid& g, const std::uint8_t* active, pvector<std::int32_t>& labels,
                            int threads = 1) {
    const std::int64_t S = g.S, n = g.size;
    labels.assign(static_cast<std::size_t>(n), -1);
    pvector<std::int32_t> parent(static_cast<std::size_t>(n), -1);
    auto find = [&](std::int64_t i) -> std::int64_t {
        while (parent[i] != i) {
            parent[i] = parent[parent[i]];
            i = parent[i];
        }
        return i;
    };
    auto unite = [&](std::int64_t a, std::int64_t b) {
        a = find(a);
        b = find(b);
        if (a == b) return;
        if (a < b) parent[b] = static_cast<std::int32_t>(a); else parent[a] = static_cast<std::int32_t>(b);
    };
    const Bands B = make_bands(g.h);
    const bool par = n >= kParallelMinCells;
    // 1. Links inside each band (path compression touches only the band's own cells).
    for_bands(B, threads, par, [&](int, int r0, int r1) {
        for (std::int64_t i = r0 * S; i < r1 * S; ++i) {
            if (!active[i]) continue;
            parent[i] = static_cast<std::int32_t>(i);
            if (active[i - 1]) unite(i, i - 1);
            if (i - S >= r0 * S && active[i - S]) unite(i, i - S);
        }
    });
    // 2. Links across the band edges, on one thread.
    for (int k = 1; k < B.count; ++k) {
        const std::int64_t row = static_cast<std::int64_t>(B.begin(k)) * S;
        for (std::int64_t i = row; i < row + S; ++i)
            if (active[i] && active[i - S]) unite(i, i - S);
    }
    // 3. Every cell's root (read-only finds), and the roots of each band.
    pvector<std::int32_t> root(static_cast<std::size_t>(n), -1);
    std::vector<std::int64_t> nroots(static_cast<std::size_t>(B.count), 0);
    for_bands(B, threads, par, [&](int k, int r0, int r1) {
        std::int64_t count = 0;
        for (std::int64_t i = r0 * S; i < r1 * S; ++i) {
            if (!active[i]) continue;
            std::int64_t j = i;
            while (parent[j] != j) j = parent[j];
            root[i] = static_cast<std::int32_t>(j);
            count += j == i;
        }
        nroots[k] = count;
    });
    // 4. Roots numbered in raster order: band offsets, then the roots of each band in order.
    std::vector<std::int64_t> offset(static_cast<std::size_t>(B.count) + 1, 0);
    for (int k = 0; k < B.count; ++k) offset[k + 1] = offset[k] + nroots[k];
    for_bands(B, threads, par, [&](int k, int r0, int r1) {
        std::int64_t next = offset[k];
        for (std::int64_t i = r0 * S; i < r1 * S; ++i)
            if (active[i] && root[i] == i) labels[i] = static_cast<std::int32_t>(next++);
    });
    // 5. Every other cell takes its root's label.
    for_bands(B, threads, par, [&](int, int r0, int r1) {
        for (std::int64_t i = r0 * S; i < r1 * S; ++i)
            if (active[i] && root[i] != i) labels[i] = labels[root[i]];
    });
    return static_cast<int>(offset[B.count]);
}

}  // namespace monohead
