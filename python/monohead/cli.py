"""``monohead <command>``: the command-line interface (the only module that prints).

Commands:
    integrate   integrate a normal map (.npy / .npz) into a depth map (and a mesh)

Progress and messages go to stderr; ``--json`` prints one machine-readable JSON object on
stdout. Errors exit with status 2 and a one-line message.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["main"]


class CliError(Exception):
    """A user-facing error: printed as one line, exit status 2."""


def _load_normal_input(path: Path) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """(normals, W or None, mask or None) from a .npy (normals) or .npz (normals[, W][, mask])."""
    if not path.exists():
        raise CliError(f"input file does not exist: {path}")
    try:
        if path.suffix == ".npy":
            return np.load(path, allow_pickle=False), None, None
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                keys = set(z.files)
                key = "normals" if "normals" in keys else "normal" if "normal" in keys else None
                if key is None:
                    raise CliError(f"{path} has no 'normals' array; found {sorted(keys)}")
                W = z["W"] if "W" in keys else None
                mask = z["mask"] if "mask" in keys else None
                return z[key], W, mask
    except CliError:
        raise
    except Exception as exc:  # unreadable or corrupt file
        raise CliError(f"cannot read {path}: {exc}") from exc
    raise CliError(f"input must be a .npy or .npz file; got {path.name!r}")


def _example() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from .integration import surfaces

    s = surfaces.head(256, neck=True)
    return s.normals, s.W, s.mask


def _cmd_integrate(args: argparse.Namespace) -> dict[str, Any]:
    import monohead

    from ._io import atomic_open

    if args.example:
        normals, W, mask = _example()
        source = "example: analytic head + neck, 256x256"
    else:
        if args.input is None:
            raise CliError("give a normal map (.npy or .npz) or --example")
        normals, W, mask = _load_normal_input(Path(args.input))
        source = str(args.input)
    if args.no_weights:
        W = None
    out = Path(args.output)
    if not out.parent.exists():
        raise CliError(f"output folder does not exist: {out.parent}")
    depth, info = monohead.integrate(
        normals, W, args.lam, mask, method=args.method, tol=args.tol, return_info=True
    )
    with atomic_open(out, "wb") as f:
        np.save(f, depth)
    result: dict[str, Any] = {
        "input": source,
        "output": str(out),
        "shape": list(depth.shape),
        "unknowns": info.num_unknowns,
        "components": info.num_components,
        "method": info.method,
        "iterations": info.iterations,
        "residual": info.residual,
        "seconds": {
            "assembly": info.assembly_seconds,
            "setup": info.setup_seconds,
            "solve": info.solve_seconds,
            "total": info.total_seconds,
        },
    }
    if args.mesh:
        from . import geometry

        m = np.isfinite(depth)
        mesh = geometry.depth_to_mesh(depth, m)
        geometry.save_mesh(mesh, args.mesh)
        result["mesh"] = str(args.mesh)
        result["mesh_vertices"] = int(len(mesh.vertices))
        result["mesh_faces"] = int(len(mesh.faces))
    return result


def _print_integrate(r: dict[str, Any]) -> None:
    s = r["seconds"]
    print(
        f"{r['input']}: {r['unknowns']} pixels in {r['components']} component(s), "
        f"{r['method']} {r['iterations']} iterations, residual {r['residual']:.2e}, "
        f"{s['total'] * 1e3:.1f} ms (assembly {s['assembly'] * 1e3:.1f}, setup {s['setup'] * 1e3:.1f}, "
        f"solve {s['solve'] * 1e3:.1f})",
        file=sys.stderr,
    )
    print(f"depth -> {r['output']}", file=sys.stderr)
    if "mesh" in r:
        print(f"mesh ({r['mesh_vertices']} vertices, {r['mesh_faces']} faces) -> {r['mesh']}", file=sys.stderr)


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    ap = argparse.ArgumentParser(prog="monohead", description="Monocular 3D head reconstruction toolkit.")
    ap.add_argument("--version", action="version", version=f"monohead {__version__}")
    sub = ap.add_subparsers(dest="command", metavar="<command>")
    sub.required = True

    p = sub.add_parser(
        "integrate",
        help="integrate a normal map into a depth map",
        description="Integrate a normal map (.npy of (H, W, 3), or .npz with 'normals' and optional 'W' "
        "and 'mask') by weighted least squares; writes the depth as .npy (NaN outside the mask).",
    )
    p.add_argument("input", nargs="?", help="normal map, .npy or .npz")
    p.add_argument("--example", action="store_true", help="integrate the bundled analytic head + neck example")
    p.add_argument("-o", "--output", default="depth.npy", help="depth map to write (.npy; default depth.npy)")
    p.add_argument("--mesh", help="also write the depth as a mesh (.ply or .obj)")
    p.add_argument("--lam", type=float, default=0.1, help="lambda in w = 1/(1 + lambda W) (default 0.1)")
    p.add_argument("--method", default="mg", choices=["mg", "jacobi", "direct"])
    p.add_argument("--tol", type=float, default=1e-6, help="relative residual to reach (default 1e-6)")
    p.add_argument("--no-weights", action="store_true", help="ignore W (unit weights)")
    p.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    p.set_defaults(run=_cmd_integrate, show=_print_integrate)
    return ap


def main(argv: list[str] | None = None) -> int:
    ap = build_parser()
    args = ap.parse_args(argv)
    try:
        result = args.run(args)
    except CliError as exc:
        print(f"monohead {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except (ValueError, TypeError, OSError) as exc:
        print(f"monohead {args.command}: error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result))
    else:
        args.show(result)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
