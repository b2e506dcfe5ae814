"""Geometry: mesh normals (paper eq. 2), normals <-> gradients, depth maps, meshes, normal-map PNGs.

Frame and units follow conventions.md: x to the right (increasing column), y up (decreasing
row), z toward the viewer; depth is the height toward the viewer in pixel units; normals
point toward the viewer. Every function validates its inputs and raises ``TypeError`` or
``ValueError`` naming the argument, what was expected and what came. Inputs may have any real
dtype and memory layout; outputs are NumPy ``float64`` (CPU only: CuPy arrays are refused).

- Normals: :func:`vertex_normals` (angle-weighted, eq. 2), :func:`face_normals`,
  :func:`normals_to_gradients`, :func:`gradients_to_normals`.
- Depth maps: :func:`depth_gradients`, :func:`gradient_magnitude` (W), :func:`normals_from_depth`,
  :func:`depth_to_mesh`, :func:`mesh_to_depth`, :func:`save_mesh`, :func:`load_mesh`.
- Closest points on a mesh: :class:`MeshSurface`, :func:`closest_points`.
- Normal-map images: :func:`normals_to_image`, :func:`image_to_normals`,
  :func:`save_normal_map`, :func:`load_normal_map`, and the PNG codec :func:`encode_png`,
  :func:`decode_png`.
"""

from .depth import (
    depth_gradients,
    depth_to_mesh,
    gradient_magnitude,
    load_mesh,
    mesh_to_depth,
    normals_from_depth,
    save_mesh,
)
from .normal_maps import decode_png, encode_png, image_to_normals, load_normal_map, normals_to_image, save_normal_map
from .normals import face_normals, gradients_to_normals, limit_slope, normals_to_gradients, vertex_normals
from .proximity import MeshSurface, closest_points, closest_points_on_triangles

__all__ = [
    "MeshSurface",
    "closest_points",
    "closest_points_on_triangles",
    "decode_png",
    "depth_gradients",
    "depth_to_mesh",
    "encode_png",
    "face_normals",
    "gradient_magnitude",
    "gradients_to_normals",
    "image_to_normals",
    "limit_slope",
    "load_mesh",
    "load_normal_map",
    "mesh_to_depth",
    "normals_from_depth",
    "normals_to_gradients",
    "normals_to_image",
    "save_mesh",
    "save_normal_map",
    "vertex_normals",
]
