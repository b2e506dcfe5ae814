// pybind11 bindings of the C++ core: array conversion, error translation, docstrings and GIL
// release only.  Validation of values, defaults and dispatch live in monohead.integration.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <memory>
#include <optional>
#include <tuple>
#include <string>

#include "checks.hpp"
#include "integrator.hpp"
#include "lbp_cascade.hpp"
#include "plane_sampling.hpp"

namespace py = pybind11;
using monohead::Integrator;

namespace {

template <class T>
using CArray = py::array_t<T, py::array::c_style>;

// The binding contract: exact dtype (no silent conversion: see .noconvert()), C order, and
// the shape given.  Raises ValueError naming the argument.
void require_shape(const py::array& a, const char* name, std::initializer_list<py::ssize_t> shape) {
    bool ok = a.ndim() == static_cast<py::ssize_t>(shape.size());
    std::size_t k = 0;
    for (auto s : shape) {
        if (!ok) break;
        ok = a.shape(static_cast<py::ssize_t>(k)) == s;
        ++k;
    }
    if (!ok) {
        std::string want = "(";
        k = 0;
        for (auto s : shape) want += (k++ ? ", " : "") + std::to_string(s);
        want += shape.size() == 1 ? ",)" : ")";
        std::string got = "(";
        for (py::ssize_t i = 0; i < a.ndim(); ++i) got += (i ? ", " : "") + std::to_string(a.shape(i));
        got += a.ndim() == 1 ? ",)" : ")";
        throw py::value_error(std::string(name) + " must have shape " + want + "; got " + got);
    }
}

py::array_t<double> new_image(int H, int W) { return py::array_t<double>({H, W}); }

py::dict report_dict(const monohead::SolveReport& rep) {
    py::dict info;
    info["iterations"] = rep.iterations;
    info["residual"] = rep.residual;
    info["converged"] = rep.converged;
    info["assembly_seconds"] = rep.assembly_seconds;
    info["solve_seconds"] = rep.solve_seconds;
    return info;
}

monohead::Pinhole pinhole(const std::tuple<double, double, double, double>& k) {
    monohead::Pinhole cam;
    cam.fx = std::get<0>(k);
    cam.fy = std::get<1>(k);
    cam.cx = std::get<2>(k);
    cam.cy = std::get<3>(k);
    return cam;
}

// The camera of an optional k = (fx, fy, cx, cy): none for an orthographic solve.
std::optional<monohead::Pinhole> camera(const std::optional<std::tuple<double, double, double, double>>& k) {
    if (!k) return std::nullopt;
    return pinhole(*k);
}

template <class T>
py::array_t<T> to_array(const std::vector<T>& v) {
    py::array_t<T> a(static_cast<py::ssize_t>(v.size()));
    std::copy(v.begin(), v.end(), a.mutable_data());
    return a;
}

py::tuple csr_tuple(const monohead::CsrSystem& s) {
    return py::make_tuple(to_array(s.indptr), to_array(s.indices), to_array(s.data), to_array(s.rhs));
}

// Shared by the solve entry points: checks x0, runs `run(x0p, outp)` without the GIL.
template <class Run>
py::tuple run_solve(Integrator& self, const std::optional<CArray<double>>& x0, Run&& run) {
    const int H = self.height(), W = self.width();
    const double* x0p = nullptr;
    if (x0) {
        require_shape(*x0, "x0", {H, W});
        x0p = x0->data();
    }
    auto out = new_image(H, W);
    double* outp = out.mutable_data();
    monohead::SolveReport rep;
    {
        py::gil_scoped_release release;
        rep = run(x0p, outp);
    }
    return py::make_tuple(out, report_dict(rep));
}

// Float inputs (normals, weights) are float32 or float64, C order, read in place: no
// conversion and no copy (a network's float32 output goes in as it is).  Anything else is a
// TypeError naming the argument.
bool is_float32(const py::array& a, const char* name) {
    const bool f32 = a.dtype().is(py::dtype::of<float>());
    if (!f32 && !a.dtype().is(py::dtype::of<double>()))
        throw py::type_error(std::string(name) + " must be float32 or float64; got dtype " +
                             std::string(py::str(a.dtype())));
    if (!(a.flags() & py::array::c_style))
        throw py::type_error(std::string(name) + " must be C-contiguous");
    return f32;
}

// Runs f(ptr) with the data of a float32/float64 array as const float* or const double*.
template <class F>
auto with_float_data(const py::array& a, const char* name, F&& f) {
    if (is_float32(a, name)) return f(static_cast<const float*>(a.data()));
    return f(static_cast<const double*>(a.data()));
}

}  // namespace

// One source, two modules on x86-64 (CMakeLists.txt): _core and _core_avx2.
#ifndef MONOHEAD_CORE_NAME
#define MONOHEAD_CORE_NAME _core
#endif

PYBIND11_MODULE(MONOHEAD_CORE_NAME, m) {
    m.doc() = "monohead's compiled core: the staggered-grid WLS normal integrator (C++17 + Eigen).";
    m.attr("openmp") = monohead::have_openmp();
    m.def(
        "scan_normals",
        [](const py::array& normals, CArray<std::uint8_t> mask, double nz_lo, double nz_hi, double slope_limit,
           int threads) {
            if (mask.ndim() != 2) throw py::value_error("mask must be 2-D (H, W); got ndim " + std::to_string(mask.ndim()));
            const int H = static_cast<int>(mask.shape(0)), W = static_cast<int>(mask.shape(1));
            require_shape(normals, "normals", {H, W, 3});
            if (threads < 1) throw py::value_error("threads must be >= 1; got " + std::to_string(threads));
            const std::uint8_t* mp = mask.data();
            monohead::NormalScan s;
            with_float_data(normals, "normals", [&](const auto* n) {
                py::gil_scoped_release release;
                s = monohead::scan_normals(n, mp, H, W, nz_lo, nz_hi, slope_limit, threads);
            });
            return py::make_tuple(s.nonfinite, s.facing, s.nz_range, s.grazing, s.pmax, s.qmax);
        },
        py::arg("normals"), py::arg("mask"), py::arg("nz_lo"), py::arg("nz_hi"), py::arg("slope_limit"),
        py::arg("threads"),
        "Counts (non-finite, Nz <= 0, Nz out of [nz_lo, nz_hi], |p| or |q| > slope_limit) of the mask "
        "pixels of float32/float64 (H, W, 3) normals, and the largest |p|, |q| (p = -Nx/Nz, q = -Ny/Nz) of "
        "the others; one pass, GIL released.");
    m.def(
        "sample_planes",
        [](py::array_t<double, py::array::c_style> table, int H, int W, py::array_t<double, py::array::c_style> x,
           py::array_t<double, py::array::c_style> y) {
            if (H < 1 || W < 1)
                throw py::value_error("H and W must be >= 1; got " + std::to_string(H) + ", " + std::to_string(W));
            require_shape(table, "table", {static_cast<py::ssize_t>(H + 2) * (W + 2), 8});
            if (x.ndim() != 1) throw py::value_error("x must be 1-D; got ndim " + std::to_string(x.ndim()));
            const py::ssize_t n = x.shape(0);
            require_shape(y, "y", {n});
            py::array_t<std::uint8_t> found(n);
            py::array_t<double> depth(n), cover(n), wpix(n);
            py::array_t<double> normal({n, static_cast<py::ssize_t>(3)});
            py::array_t<std::int64_t> flat(n);
            {
                py::gil_scoped_release release;
                monohead::sample_planes(table.data(), H, W, x.data(), y.data(), static_cast<std::size_t>(n),
                                        found.mutable_data(), depth.mutable_data(), normal.mutable_data(),
                                        flat.mutable_data(), cover.mutable_data(), wpix.mutable_data());
            }
            return py::make_tuple(found, depth, normal, flat, cover, wpix);
        },
        py::arg("table").noconvert(), py::arg("H"), py::arg("W"), py::arg("x").noconvert(), py::arg("y").noconvert(),
        "The observed surface under points (x, y) (pixels, y = -row) from a padded ((H + 2) (W + 2), 8) float64 "
        "table of per-pixel planes: (found uint8, depth, unit normal (n, 3), nearest pixel's flat index, "
        "coverage weight, pixel weight); monohead.fullhead._sample_depth documents it. GIL released.");
    m.def(
        "scan_nonnegative",
        [](const py::array& a, int threads) -> py::tuple {
            if (threads < 1) throw py::value_error("threads must be >= 1; got " + std::to_string(threads));
            const auto n = static_cast<std::int64_t>(a.size());
            if (n == 0) return py::make_tuple(true, 0.0);
            monohead::ValueScan s;
            with_float_data(a, "array", [&](const auto* p) {
                py::gil_scoped_release release;
                s = monohead::scan_nonnegative(p, n, threads);
            });
            return py::make_tuple(s.finite_nonnegative, s.max);
        },
        py::arg("a"), py::arg("threads"),
        "(all values finite and >= 0, their maximum) of a float32/float64 C-contiguous array; one pass, "
        "GIL released.");
    m.def(
        "work_cache",
        [](std::optional<std::size_t> limit) {
            auto& pool = monohead::BlockPool::instance();
            const std::size_t old = limit ? pool.set_limit(*limit) : pool.limit();
            return std::make_tuple(old, pool.cached());
        },
        py::arg("limit") = py::none(),
        "(limit before the call, bytes cached after it) of the core's cache of freed work blocks "
        "(pool.hpp); a limit sets the most bytes kept (0: none; the excess is freed).");

    // module_local: the two builds of the core (CMakeLists.txt) bind the same C++ types, and
    // pybind11 refuses to register a type twice in one process unless each module keeps its own.
    py::class_<monohead::LbpCascade>(m, "LbpCascade", py::module_local(),
                                     "A multi-block LBP cascade (the OpenCV LBP format, evaluated as scikit-image "
                                     "does); built by monohead.photo from the XML file.")
        .def(py::init([](int window_h, int window_w, float eps, CArray<std::int32_t> features,
                         CArray<std::int32_t> stump_feature, CArray<std::uint32_t> stump_lut,
                         CArray<float> stump_leaves, CArray<std::int32_t> stages, CArray<float> stage_threshold) {
                 const auto nf = features.ndim() == 2 ? features.shape(0) : -1;
                 require_shape(features, "features", {nf, 4});
                 const auto ns = stump_feature.ndim() == 1 ? stump_feature.shape(0) : -1;
                 require_shape(stump_feature, "stump_feature", {ns});
                 require_shape(stump_lut, "stump_lut", {ns, 8});
                 require_shape(stump_leaves, "stump_leaves", {ns, 2});
                 const auto ng = stages.ndim() == 2 ? stages.shape(0) : -1;
                 require_shape(stages, "stages", {ng, 2});
                 require_shape(stage_threshold, "stage_threshold", {ng});
                 auto cas = std::make_unique<monohead::LbpCascade>();
                 cas->window_h = window_h;
                 cas->window_w = window_w;
                 cas->eps = eps;
                 for (py::ssize_t i = 0; i < nf; ++i)
                     cas->features.push_back({features.at(i, 0), features.at(i, 1), features.at(i, 2), features.at(i, 3)});
                 for (py::ssize_t i = 0; i < ns; ++i) {
                     const auto f = stump_feature.at(i);
                     if (f < 0 || f >= nf)
                         throw py::value_error("stump_feature holds " + std::to_string(f) + ", not a feature index");
                     cas->stump_feature.push_back(f);
                     std::array<std::uint32_t, 8> lut{};
                     for (int j = 0; j < 8; ++j) lut[static_cast<std::size_t>(j)] = stump_lut.at(i, j);
                     cas->stump_lut.push_back(lut);
                     cas->stump_left.push_back(stump_leaves.at(i, 0));
                     cas->stump_right.push_back(stump_leaves.at(i, 1));
                 }
                 for (py::ssize_t i = 0; i < ng; ++i) {
                     if (stages.at(i, 0) < 0 || stages.at(i, 1) < 0 || stages.at(i, 0) + stages.at(i, 1) > ns)
                         throw py::value_error("stages row " + std::to_string(i) + " is not a range of stumps");
                     cas->stage_first.push_back(stages.at(i, 0));
                     cas->stage_count.push_back(stages.at(i, 1));
                     cas->stage_threshold.push_back(stage_threshold.at(i));
                 }
                 return cas;
             }),
             py::arg("window_h"), py::arg("window_w"), py::arg("eps"), py::arg("features").noconvert(),
             py::arg("stump_feature").noconvert(), py::arg("stump_lut").noconvert(),
             py::arg("stump_leaves").noconvert(), py::arg("stages").noconvert(),
             py::arg("stage_threshold").noconvert(),
             "features: (F, 4) int32 r, c, w, h; stump_feature: (S,) int32; stump_lut: (S, 8) uint32; "
             "stump_leaves: (S, 2) float32 left, right; stages: (G, 2) int32 first stump, count; "
             "stage_threshold: (G,) float32.")
        .def(
            "detect",
            [](const monohead::LbpCascade& cas, CArray<std::uint8_t> image, CArray<float> scales, float step_ratio,
               int min_neighbours, float threshold, int threads) {
                if (image.ndim() != 2)
                    throw py::value_error("image must be 2-D (H, W) uint8; got ndim " + std::to_string(image.ndim()));
                require_shape(scales, "scales", {scales.ndim() == 1 ? scales.shape(0) : -1});
                if (threads < 1) throw py::value_error("threads must be >= 1; got " + std::to_string(threads));
                const int H = static_cast<int>(image.shape(0)), W = static_cast<int>(image.shape(1));
                std::vector<float> sc(scales.data(), scales.data() + scales.shape(0));
                std::vector<monohead::LbpWindow> found;
                {
                    py::gil_scoped_release release;
                    found = monohead::lbp_group(monohead::lbp_scan(cas, image.data(), H, W, sc, step_ratio, threads),
                                                threshold, min_neighbours);
                }
                py::array_t<std::int32_t> out({static_cast<py::ssize_t>(found.size()), static_cast<py::ssize_t>(5)});
                auto o = out.mutable_unchecked<2>();
                for (std::size_t i = 0; i < found.size(); ++i) {
                    const auto k = static_cast<py::ssize_t>(i);
                    o(k, 0) = found[i].r;
                    o(k, 1) = found[i].c;
                    o(k, 2) = found[i].w;
                    o(k, 3) = found[i].h;
                    o(k, 4) = found[i].count;
                }
                return out;
            },
            py::arg("image").noconvert(), py::arg("scales").noconvert(), py::arg("step_ratio"),
            py::arg("min_neighbours"), py::arg("threshold"), py::arg("threads") = 1,
            "Grouped detections on an (H, W) uint8 image at the window scales given (float32): (N, 5) int32 rows "
            "r, c, width, height, members; the order and values do not depend on threads.");

    py::class_<Integrator>(m, "Integrator", py::module_local(),
                           "WLS normal integrator on a fixed mask; builds the system and the solver "
                           "(multigrid hierarchy, Jacobi diagonal or Cholesky factor) once.")
        .def(py::init([](CArray<std::uint8_t> mask, std::optional<py::array> weights, double lam,
                         const std::string& method, int threads) {
                 if (mask.ndim() != 2)
                     throw py::value_error("mask must be 2-D (H, W); got ndim " + std::to_string(mask.ndim()));
                 const int H = static_cast<int>(mask.shape(0)), W = static_cast<int>(mask.shape(1));
                 if (threads < 1) throw py::value_error("threads must be >= 1; got " + std::to_string(threads));
                 const auto meth = monohead::parse_method(method);
                 if (!weights) {
                     py::gil_scoped_release release;
                     return new Integrator(H, W, mask.data(), static_cast<const double*>(nullptr), lam, meth, {},
                                           threads);
                 }
                 require_shape(*weights, "weights", {H, W});
                 return with_float_data(*weights, "weights", [&](auto wp) {
                     py::gil_scoped_release release;
                     return new Integrator(H, W, mask.data(), wp, lam, meth, {}, threads);
                 });
             }),
             py::arg("mask").noconvert(), py::arg("weights").noconvert() = py::none(), py::arg("lam") = 0.1,
             py::arg("method") = "mg", py::arg("threads") = 1,
             "mask: (H, W) uint8, C order, not empty; weights: (H, W) float32 or float64 gradient magnitudes W "
             "(w = 1/(1 + lam W), computed in float64) or None for w = 1; method: 'mg', 'jacobi' or 'direct'; "
             "threads >= 1 (results do not depend on it).")
        .def(
            "solve",
            [](Integrator& self, py::array normals, std::optional<CArray<double>> x0, double tol,
               int maxiter) {
                require_shape(normals, "normals", {self.height(), self.width(), 3});
                is_float32(normals, "normals");  // dtype and order checked before the GIL is released
                return with_float_data(normals, "normals", [&](auto np) {
                    return run_solve(self, x0, [&](const double* x0p, double* outp) {
                        return self.solve(np, x0p, tol, maxiter, outp);
                    });
                });
            },
            py::arg("normals").noconvert(), py::arg("x0").noconvert() = py::none(), py::arg("tol") = 1e-6,
            py::arg("maxiter") = -1,
            "Integrate normals (H, W, 3) float32 or float64, C order (read in place); x0: (H, W) float64 "
            "or None; maxiter < 0: no limit.  Returns (depth (H, W) float64 with NaN outside the mask, "
            "info dict).")
        .def(
            "csr",
            [](const Integrator& self, py::array normals) {
                require_shape(normals, "normals", {self.height(), self.width(), 3});
                return csr_tuple(with_float_data(normals, "normals", [&](auto np) {
                    py::gil_scoped_release release;
                    return self.csr(np);
                }));
            },
            py::arg("normals").noconvert(),
            "The system over the mask pixels in raster order: (indptr int64, indices int32, data "
            "float64, rhs float64).")
        .def(
            "solve_perspective",
            [](Integrator& self, CArray<double> normals, std::tuple<double, double, double, double> k,
               std::optional<CArray<double>> x0, double tol, int maxiter) {
                require_shape(normals, "normals", {self.height(), self.width(), 3});
                const auto cam = pinhole(k);
                return run_solve(self, x0, [&](const double* x0p, double* outp) {
                    return self.solve_perspective(normals.data(), cam, x0p, tol, maxiter, outp);
                });
            },
            py::arg("normals").noconvert(), py::arg("k"), py::arg("x0").noconvert() = py::none(), py::arg("tol") = 1e-6,
            py::arg("maxiter") = -1,
            "Perspective solve; k = (fx, fy, cx, cy) in OpenCV form.  Returns (log-depth (H, W) with mean 0 per "
            "component, NaN outside the mask; info dict).")
        .def(
            "solve_robust",
            [](Integrator& self, CArray<double> normals, std::optional<std::tuple<double, double, double, double>> k,
               double sharpness, int max_reweightings, double energy_tol, int inner_iterations,
               std::optional<CArray<double>> x0, double tol, int maxiter) {
                require_shape(normals, "normals", {self.height(), self.width(), 3});
                const auto cam = camera(k);
                monohead::RobustOptions opt;
                opt.sharpness = sharpness;
                opt.max_reweightings = max_reweightings;
                opt.energy_tol = energy_tol;
                opt.inner_iterations = inner_iterations;
                monohead::RobustReport rrep;
                py::tuple res = run_solve(self, x0, [&](const double* x0p, double* outp) {
                    return self.solve_robust(normals.data(), cam ? &*cam : nullptr, opt, x0p, tol, maxiter, outp,
                                             rrep);
                });
                py::dict info = res[1];
                info["reweightings"] = rrep.reweightings;
                info["scale"] = rrep.scale;
                info["energies"] = rrep.energies;
                return res;
            },
            py::arg("normals").noconvert(), py::arg("k") = py::none(), py::arg("sharpness") = 2.0,
            py::arg("max_reweightings") = 100, py::arg("energy_tol") = 1e-2, py::arg("inner_iterations") = 3,
            py::arg("x0").noconvert() = py::none(), py::arg("tol") = 1e-6, py::arg("maxiter") = -1,
            "Discontinuity-preserving solve (Cauchy IRLS, robust.hpp) from normals (orthographic, or perspective "
            "with k = (fx, fy, cx, cy)).  Returns (h, info) with info['energies'] (after the smooth solve, then "
            "after each reweighting), 'reweightings', 'scale' (sigma); 'iterations' counts every CG iteration and "
            "'converged' says whether the energy criterion was met.")
        .def(
            "solve_prior",
            [](Integrator& self, CArray<double> normals, std::optional<std::tuple<double, double, double, double>> k,
               CArray<double> weight, CArray<double> target, std::optional<CArray<double>> x0, double tol, int maxiter) {
                const int H = self.height(), W = self.width();
                require_shape(normals, "normals", {H, W, 3});
                require_shape(weight, "prior_weight", {H, W});
                require_shape(target, "prior", {H, W});
                const auto cam = camera(k);
                return run_solve(self, x0, [&](const double* x0p, double* outp) {
                    return self.solve_prior(normals.data(), cam ? &*cam : nullptr, weight.data(), target.data(), x0p,
                                            tol, maxiter, outp);
                });
            },
            py::arg("normals").noconvert(), py::arg("k"), py::arg("weight").noconvert(), py::arg("target").noconvert(),
            py::arg("x0").noconvert() = py::none(), py::arg("tol") = 1e-6, py::arg("maxiter") = -1,
            "Smooth solve fused with a depth prior: weight (H, W) >= 0 (0: no prior), target (H, W) the prior's "
            "value of the unknown (height, or log-depth with k).  Returns (h, info).")
        .def(
            "csr_perspective",
            [](const Integrator& self, CArray<double> normals, std::tuple<double, double, double, double> k) {
                require_shape(normals, "normals", {self.height(), self.width(), 3});
                const auto cam = pinhole(k);
                monohead::CsrSystem s;
                {
                    py::gil_scoped_release release;
                    s = self.csr_perspective(normals.data(), cam);
                }
                return csr_tuple(s);
            },
            py::arg("normals").noconvert(), py::arg("k"), "The perspective system (unknown: log-depth) in CSR.")
        .def_property_readonly("shape", [](const Integrator& s) { return py::make_tuple(s.height(), s.width()); })
        .def_property_readonly("num_unknowns", &Integrator::num_unknowns)
        .def_property_readonly("num_components", &Integrator::num_components)
        .def_property_readonly("num_levels", &Integrator::num_levels)
        .def_property(
            "threads", &Integrator::threads,
            [](Integrator& self, int t) {
                if (t < 1) throw py::value_error("threads must be >= 1; got " + std::to_string(t));
                self.set_threads(t);
            },
            "Threads of setup-free work (solves); results do not depend on it.")
        .def_property_readonly("assembly_seconds", &Integrator::assembly_seconds)
        .def_property_readonly("setup_seconds", &Integrator::setup_seconds)
        .def_property_readonly("nbytes", &Integrator::bytes,
                               "Bytes held by the system and solver plus one solve's work arrays.");
}
