// pybind11 bindings of the C++ core: array conversion, error translation, docstrings and GIL
// release only.  Validation of values, defaults and dispatch live in monohead.integration.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <optional>
#include <tuple>
#include <string>

#include "checks.hpp"
#include "integrator.hpp"

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

PYBIND11_MODULE(_core, m) {
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

    py::class_<Integrator>(m, "Integrator",
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
