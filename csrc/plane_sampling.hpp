// The observed surface under scattered points, for the complete head's fit
// (monohead.fullhead._sample_depth, which documents the method and calls this).
//
// Each pixel of a padded (H + 2) x (W + 2) table holds 8 values
//     m * (1, C, P, Q, nx, ny, nz, w)
// (m: the pixel is in the mask; its tangent plane h(col, row) = C + P col + Q row; its unit
// normal; its weight).  A point (col, row) = (x, -y) takes the bilinear weights of its four
// surrounding pixels; the in-mask ones carry their planes to it.  Plain C++: no Python types.
//
// The arithmetic is written in NumPy's order (the build has no fused multiply-adds), so that
// the results equal those of the NumPy expressions the Python docstring gives.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>

namespace monohead {

// Outputs per point i (arrays of n, normal of n x 3):
//   found[i]  the in-mask pixels hold at least a quarter of the bilinear weight;
//   depth[i]  the weighted planes' height at the point (0 when not found);
//   normal    the weighted normals, unit length ((0, 0, 1) when not found);
//   flat[i]   the flat index row * W + col of the nearest pixel (clipped to the image);
//   cover[i]  clip((weight - 1/4) * 2, 0, 1);
//   wpix[i]   the weighted pixel weight w (0 when not found).
// A point whose four pixels lie beyond the pad (or a non-finite one) has weight 0.
inline void sample_planes(const double* table, int H, int W, const double* x, const double* y, std::size_t n,
                          std::uint8_t* found, double* depth, double* normal, std::int64_t* flat, double* cover,
                          double* wpix) {
    const std::int64_t stride = static_cast<std::int64_t>(W) + 2;
    for (std::size_t i = 0; i < n; ++i) {
        const double col = x[i];
        const double row = -y[i];
        double acc[8] = {0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0};
        const double c0 = std::floor(col);
        const double r0 = std::floor(row);
        const bool near = std::isfinite(col) && std::isfinite(row) && c0 >= -1.0 && c0 <= W - 1.0 && r0 >= -1.0 &&
                          r0 <= H - 1.0;
        if (near) {
            const double fc = col - c0;
            const double fr = row - r0;
            const double bil[4] = {(1.0 - fr) * (1.0 - fc), (1.0 - fr) * fc, fr * (1.0 - fc), fr * fc};
            const std::int64_t base =
                (static_cast<std::int64_t>(r0) + 1) * stride + static_cast<std::int64_t>(c0) + 1;
            const std::int64_t idx[4] = {base, base + 1, base + stride, base + stride + 1};
            for (int k = 0; k < 4; ++k) {
                const double* t = table + idx[k] * 8;
                for (int c = 0; c < 8; ++c) acc[c] += bil[k] * t[c];
            }
        }
        const double aw = acc[0];
        const bool ok = aw >= 0.25;
        const double inv = aw > 1e-12 ? aw : 1e-12;
        found[i] = ok ? 1 : 0;
        depth[i] = ok ? (acc[1] + acc[2] * col + acc[3] * row) / inv : 0.0;
        double* nv = normal + 3 * i;
        if (ok) {
            const double len = std::sqrt(acc[4] * acc[4] + acc[5] * acc[5] + acc[6] * acc[6]);
            const double l = len > 1e-12 ? len : 1e-12;
            nv[0] = acc[4] / l;
            nv[1] = acc[5] / l;
            nv[2] = acc[6] / l;
        } else {
            nv[0] = 0.0;
            nv[1] = 0.0;
            nv[2] = 1.0;
        }
        double cn = std::nearbyint(col);
        double rn = std::nearbyint(row);
        cn = cn < 0.0 ? 0.0 : (cn > W - 1.0 ? W - 1.0 : cn);
        rn = rn < 0.0 ? 0.0 : (rn > H - 1.0 ? H - 1.0 : rn);
        flat[i] = std::isfinite(cn) && std::isfinite(rn)
                      ? static_cast<std::int64_t>(rn) * W + static_cast<std::int64_t>(cn)
                      : 0;
        const double cv = (aw - 0.25) * 2.0;
        cover[i] = cv < 0.0 ? 0.0 : (cv > 1.0 ? 1.0 : cv);
        wpix[i] = ok ? acc[7] / inv : 0.0;
    }
}

}  // namespace monohead
