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
    for (int r = 0; r < H; ++r) {  // per row: its first and last non-zero byte only
        const std::uint8_t* row = mask + static_cast<std::int64_t>(r) * W;
        const std::uint8_t* first = std::find_if(row, row + W, [](std::uint8_t v) { return v != 0; });
        if (first == row + W) continue;
        int last = W - 1;
        while (!row[last]) --last;
        const int c0 = static_cast<int>(first - row);
        if (rmax < 0) rmin = r;
        rmax = r;
        cmin = std::min(cmin, c0);
        cmax = std::max(cmax, last);
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

// The 4-connected components of the cells where `active` is non-zero, found on the runs of
// consecutive active cells of each row (a head or rectangle mask has one to three runs per
// row, so the union-find works on thousands of runs instead of millions of cells).
// Components are numbered 0..n-1 in raster order of their first cell.
struct Components {
    int count = 0;
    std::vector<std::int64_t> size;        // cells of each component
    std::vector<std::int64_t> run_begin;   // runs in raster order: padded cells [begin, end)
    std::vector<std::int64_t> run_end;
    std::vector<std::int32_t> run_label;   // component of each run
    std::vector<std::int64_t> row_first;   // first run of padded row r (rows 1..h+1; h+2 entries)
};

// Rows run in bands on up to `threads` threads (each band collects its rows' runs, joined in
// band order); the union-find over runs is serial.  The result does not depend on the thread
// count.  `active`: a padded array of g.size cells (border inactive).
inline Components find_components(const PaddedGrid& g, const std::uint8_t* active, int threads = 1) {
    const std::int64_t S = g.S;
    const Bands B = make_bands(g.h);
    std::vector<std::vector<std::int64_t>> band_runs(static_cast<std::size_t>(B.count));
    std::vector<std::int64_t> row_count(static_cast<std::size_t>(g.h) + 2, 0);
    for_bands(B, threads, g.size >= kParallelMinCells, [&](int k, int a, int e) {
        auto& runs = band_runs[static_cast<std::size_t>(k)];
        for (int r = a; r < e; ++r) {
            const std::int64_t row = static_cast<std::int64_t>(r) * S;
            std::int64_t n = 0;
            for (std::int64_t i = row + 1; i <= row + g.w; ++i) {
                if (!active[i]) continue;
                std::int64_t j = i;
                while (active[j]) ++j;  // the border column is inactive
                runs.push_back(i);
                runs.push_back(j);
                ++n;
                i = j;
            }
            row_count[static_cast<std::size_t>(r)] = n;
        }
    });
    Components c;
    c.row_first.assign(static_cast<std::size_t>(g.h) + 2, 0);
    for (int r = 1; r <= g.h; ++r) c.row_first[r + 1] = c.row_first[r] + row_count[r];
    const std::int64_t nruns = c.row_first[static_cast<std::size_t>(g.h) + 1];
    c.run_begin.reserve(static_cast<std::size_t>(nruns));
    c.run_end.reserve(static_cast<std::size_t>(nruns));
    for (const auto& runs : band_runs)
        for (std::size_t t = 0; t < runs.size(); t += 2) {
            c.run_begin.push_back(runs[t]);
            c.run_end.push_back(runs[t + 1]);
        }
    // Union-find over runs; the root of a set is its smallest run index (its first run in
    // raster order), so numbering the roots in order numbers the components in raster order.
    std::vector<std::int64_t> parent(static_cast<std::size_t>(nruns));
    for (std::int64_t t = 0; t < nruns; ++t) parent[t] = t;
    auto find = [&](std::int64_t t) {
        while (parent[t] != t) {
            parent[t] = parent[parent[t]];
            t = parent[t];
        }
        return t;
    };
    for (int r = 2; r <= g.h; ++r) {  // runs of row r against those of row r - 1 (overlap in columns)
        std::int64_t u = c.row_first[r - 1], d = c.row_first[r];
        const std::int64_t u1 = c.row_first[r], d1 = c.row_first[r + 1];
        while (u < u1 && d < d1) {
            const std::int64_t ub = c.run_begin[u] + S, ue = c.run_end[u] + S;  // shifted to row r
            const std::int64_t db = c.run_begin[d], de = c.run_end[d];
            if (ub < de && db < ue) {
                std::int64_t a = find(u), b = find(d);
                if (a != b) {
                    if (a < b) parent[b] = a; else parent[a] = b;
                }
            }
            if (ue < de) ++u; else ++d;
        }
    }
    c.run_label.assign(static_cast<std::size_t>(nruns), -1);
    for (std::int64_t t = 0; t < nruns; ++t) {
        const std::int64_t root = find(t);
        if (root == t) {
            c.run_label[t] = c.count++;
            c.size.push_back(0);
        } else {
            c.run_label[t] = c.run_label[root];  // root < t: already numbered
        }
        c.size[static_cast<std::size_t>(c.run_label[t])] += c.run_end[t] - c.run_begin[t];
    }
    return c;
}

// The component of every cell of `c` into the padded array `labels` (g.size cells), -1 on
// inactive cells; rows in bands on up to `threads` threads.
inline void fill_labels(const PaddedGrid& g, const Components& c, pvector<std::int32_t>& labels, int threads = 1) {
    labels.resize(static_cast<std::size_t>(g.size));
    std::int32_t* lab = labels.data();
    const std::int64_t S = g.S;
    std::fill(lab, lab + S, -1);
    std::fill(lab + static_cast<std::int64_t>(g.h + 1) * S, lab + g.size, -1);
    for_bands(make_bands(g.h), threads, g.size >= kParallelMinCells, [&](int, int a, int e) {
        std::fill(lab + a * S, lab + e * S, -1);
        for (std::int64_t t = c.row_first[a]; t < c.row_first[e]; ++t)
            std::fill(lab + c.run_begin[t], lab + c.run_end[t], c.run_label[t]);
    });
}

// Label the 4-connected components of the cells where `active` is non-zero (find_components):
// labels 0..n-1 in raster order of first appearance, -1 on inactive cells.  Returns n.
// `active` and `labels` are padded arrays of g.size cells (border inactive).
inline int label_components(const PaddedGrid& g, const std::uint8_t* active, pvector<std::int32_t>& labels,
                            int threads = 1) {
    const Components c = find_components(g, active, threads);
    fill_labels(g, c, labels, threads);
    return c.count;
}

}  // namespace monohead
