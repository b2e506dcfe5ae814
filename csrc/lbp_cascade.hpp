// Multi-block LBP cascade face detector (the OpenCV LBP cascade format, as evaluated by
// scikit-image's skimage.feature.Cascade): the same windows, the same rounding, the same
// grouping, so that the detections match scikit-image's; faster because each feature's 16
// corner offsets are computed once per scale instead of once per window, and the scales run
// on several threads.  Plain C++17 (+ OpenMP when available), no Python types.
//
// Conventions (those of scikit-image's detector, reproduced exactly):
// - integral image: ii[r][c] = sum of img[0..r][0..c] (inclusive), stored as float32; a block
//   sum is ii[r1][c1] + ii[r0-1][c0-1] - ii[r0-1][c1] - ii[r1][c0-1] in float32;
// - a feature is a 3 x 3 grid of blocks of (w, h) pixels at (r, c) of the window; its code has
//   one bit per outer block, set when that block's sum >= the centre's, from the most
//   significant bit: top-left, top, top-right, right, bottom-right, bottom, bottom-left, left;
// - at window scale s the feature's r, c, w, h are int(v * s) (float32 product, truncated),
//   the window is int(24 * s) pixels, the step round(s * step_ratio) (half away from zero),
//   and window corners run over 0 <= row < H - window (strictly below);
// - a stump adds `left` when its look-up table's bit for the code is 1, else `right`; a stage
//   fails when its sum < threshold - eps;
// - grouping: detections in scan order (scale, row, column); each joins the cluster whose
//   current mean rectangle (integer means) it overlaps most, by intersection / smaller area,
//   above the threshold, else starts a new cluster; clusters with at least `min_neighbours`
//   members are returned as their mean rectangles.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace monohead {

struct LbpCascade {
    int window_h = 24, window_w = 24;
    float eps = 1e-5f;
    std::vector<std::array<int, 4>> features;  // r, c, w, h of the top-left block, at scale 1
    std::vector<int> stump_feature;
    std::vector<std::array<std::uint32_t, 8>> stump_lut;
    std::vector<float> stump_left, stump_right;
    std::vector<int> stage_first, stage_count;
    std::vector<float> stage_threshold;
};

struct LbpWindow {
    int r = 0, c = 0, w = 0, h = 0;
    int count = 1;  // members of the cluster (1 for a raw detection)
};

namespace detail {

// Round half away from zero, as scikit-image's round.
inline long round_half_away(double x) { return x >= 0 ? static_cast<long>(x + 0.5) : -static_cast<long>(-x + 0.5); }

// Windows of one scale that pass every stage, in row-major order.
inline std::vector<LbpWindow> scan_scale(const LbpCascade& cas, const std::vector<float>& ii, int H, int W,
                                         float scale, float step_ratio) {
    std::vector<LbpWindow> out;
    const long step = std::max(1L, round_half_away(static_cast<double>(scale * step_ratio)));
    const int wh = static_cast<int>(static_cast<float>(cas.window_h) * scale);
    const int ww = static_cast<int>(static_cast<float>(cas.window_w) * scale);
    const int max_row = H - wh, max_col = W - ww;
    if (max_row < 0 || max_col < 0) return out;
    // per feature: the 16 corner offsets (4 x 4 grid of block corners, relative to the
    // window's top-left pixel) in the padded integral image pii (pii[R][C] = sum of the pixels
    // above row R and left of column C, so ii[r][c] = pii[r + 1][c + 1] and ii[-1][.] = 0)
    const int P = W + 1;  // padded row length
    const std::size_t nf = cas.features.size();
    std::vector<std::array<int, 16>> corners(nf);
    for (std::size_t f = 0; f < nf; ++f) {
        const auto& ft = cas.features[f];
        const int r = static_cast<int>(static_cast<float>(ft[0]) * scale);
        const int c = static_cast<int>(static_cast<float>(ft[1]) * scale);
        const int w = static_cast<int>(static_cast<float>(ft[2]) * scale);
        const int h = static_cast<int>(static_cast<float>(ft[3]) * scale);
        // block (i, j) spans rows r + i h .. r + (i + 1) h - 1 and columns c + j w ..
        // c + (j + 1) w - 1: its sum reads the corners (i, j), (i, j + 1), (i + 1, j), (i + 1, j + 1)
        for (int i = 0; i < 4; ++i)
            for (int j = 0; j < 4; ++j) corners[f][4 * i + j] = (r + i * h) * P + (c + j * w);
    }
    static constexpr int order[8][2] = {{0, 0}, {0, 1}, {0, 2}, {1, 2}, {2, 2}, {2, 1}, {2, 0}, {1, 0}};
    const std::size_t nstages = cas.stage_first.size();
    for (long row = 0; row < max_row; row += step) {
        for (long col = 0; col < max_col; col += step) {
            const float* base = ii.data() + row * P + col;
            bool pass = true;
            for (std::size_t s = 0; s < nstages && pass; ++s) {
                float points = 0.0f;
                const int first = cas.stage_first[s];
                for (int k = first; k < first + cas.stage_count[s]; ++k) {
                    const auto& cn = corners[static_cast<std::size_t>(cas.stump_feature[static_cast<std::size_t>(k)])];
                    float sums[3][3];
                    for (int i = 0; i < 3; ++i)
                        for (int j = 0; j < 3; ++j) {
                            // as scikit-image: S = ii[r1, c1] + ii[r0-1, c0-1] - ii[r0-1, c1] - ii[r1, c0-1]
                            float S = base[cn[4 * (i + 1) + (j + 1)]];
                            S += base[cn[4 * i + j]];
                            S -= base[cn[4 * i + (j + 1)]];
                            S -= base[cn[4 * (i + 1) + j]];
                            sums[i][j] = S;
                        }
                    int code = 0;
                    for (int b = 0; b < 8; ++b)
                        code |= (sums[order[b][0]][order[b][1]] >= sums[1][1] ? 1 : 0) << (7 - b);
                    const auto& lut = cas.stump_lut[static_cast<std::size_t>(k)];
                    const bool bit = (lut[static_cast<std::size_t>(code >> 5)] >> (code & 31)) & 1u;
                    points += bit ? cas.stump_left[static_cast<std::size_t>(k)]
                                  : cas.stump_right[static_cast<std::size_t>(k)];
                }
                if (points < cas.stage_threshold[s] - cas.eps) pass = false;
            }
            if (pass) out.push_back({static_cast<int>(row), static_cast<int>(col), ww, wh, 1});
        }
    }
    return out;
}

inline float intersection_score(const LbpWindow& a, const LbpWindow& b) {
    const float ix = std::max(0, std::min(a.c + a.w, b.c + b.w) - std::max(a.c, b.c));
    const float iy = std::max(0, std::min(a.r + a.h, b.r + b.h) - std::max(a.r, b.r));
    const float area_a = static_cast<float>(a.h * a.w), area_b = static_cast<float>(b.h * b.w);
    const float smaller = area_b > area_a ? area_a : area_b;
    return ix * iy / smaller;
}

}  // namespace detail

// Raw detections over the scales (in scale order, each scale in row-major order), on an
// (H, W) uint8 grayscale image (row-major).  `threads` >= 1 scales run at once; the result
// does not depend on it.
inline std::vector<LbpWindow> lbp_scan(const LbpCascade& cas, const std::uint8_t* img, int H, int W,
                                       const std::vector<float>& scales, float step_ratio, int threads) {
    if (H < 1 || W < 1) throw std::invalid_argument("image must not be empty");
    // integral image with one zero row and column in front: ii[(r + 1) * (W + 1) + c + 1] is
    // the inclusive sum to (r, c), computed exactly in 64 bits and stored as float32
    const int P = W + 1;
    std::vector<float> ii(static_cast<std::size_t>(H + 1) * static_cast<std::size_t>(P), 0.0f);
    {
        std::vector<std::uint64_t> row_acc(static_cast<std::size_t>(W), 0);
        for (int r = 0; r < H; ++r) {
            std::uint64_t run = 0;
            for (int c = 0; c < W; ++c) {
                run += img[static_cast<std::size_t>(r) * static_cast<std::size_t>(W) + static_cast<std::size_t>(c)];
                row_acc[static_cast<std::size_t>(c)] += run;
                ii[static_cast<std::size_t>(r + 1) * static_cast<std::size_t>(P) + static_cast<std::size_t>(c + 1)] =
                    static_cast<float>(row_acc[static_cast<std::size_t>(c)]);
            }
        }
    }
    const int n = static_cast<int>(scales.size());
    std::vector<std::vector<LbpWindow>> per(static_cast<std::size_t>(n));
#ifdef _OPENMP
#pragma omp parallel for schedule(dynamic, 1) num_threads(std::max(1, threads))
#endif
    for (int k = 0; k < n; ++k)
        per[static_cast<std::size_t>(k)] = detail::scan_scale(cas, ii, H, W, scales[static_cast<std::size_t>(k)], step_ratio);
    (void)threads;
    std::vector<LbpWindow> out;
    for (auto& v : per) out.insert(out.end(), v.begin(), v.end());
    return out;
}

// Group raw detections (see the header comment); each result carries its member count.
inline std::vector<LbpWindow> lbp_group(const std::vector<LbpWindow>& dets, float threshold, int min_neighbours) {
    struct Cluster {
        long r = 0, c = 0, w = 0, h = 0;
        int count = 0;
        LbpWindow mean() const {
            return {static_cast<int>(r / count), static_cast<int>(c / count), static_cast<int>(w / count),
                    static_cast<int>(h / count), count};
        }
    };
    std::vector<Cluster> clusters;
    for (std::size_t k = 0; k < dets.size(); ++k) {
        const auto& d = dets[k];
        float best = threshold;
        std::size_t best_k = 0;
        bool fresh = true;
        for (std::size_t j = 0; j < clusters.size(); ++j) {
            const float s = detail::intersection_score(d, clusters[j].mean());
            if (s > best) {
                fresh = false;
                best_k = j;
                best = s;
            }
        }
        if (fresh) {
            clusters.push_back({d.r, d.c, d.w, d.h, 1});
        } else {
            auto& cl = clusters[best_k];
            cl.r += d.r;
            cl.c += d.c;
            cl.w += d.w;
            cl.h += d.h;
            cl.count += 1;
        }
    }
    std::vector<LbpWindow> out;
    for (const auto& cl : clusters)
        if (cl.count >= min_neighbours) out.push_back(cl.mean());
    return out;
}

}  // namespace monohead
