"""UV parametrisation of a triangle mesh."""

from __future__ import annotations

import numpy as np
import xatlas

from pipelines.geometry import TriangleMesh


def unwrap_uv(mesh: TriangleMesh) -> tuple[TriangleMesh, np.ndarray]:
    """Cut the mesh into charts and pack them into the unit square with xatlas.

    Vertices on chart seams are duplicated, so the returned mesh has its own
    vertex list (vertex colours follow their source vertex).

    Returns ``(mesh, uvs)`` with ``uvs`` of shape (V, 2), float32 in [0, 1],
    **v up**: v = 0 is the bottom row of the texture image and v = 1 its top
    row (the OpenGL / trimesh convention).  Texel row ``r`` of an ``H``-high
    image therefore covers v in [1 - (r + 1)/H, 1 - r/H].  ``gltf.glb_bytes``
    flips v when it writes glTF's top-left-origin TEXCOORD_0.
    """
    vertices = np.ascontiguousarray(mesh.vertices, dtype=np.float32)
    faces = np.ascontiguousarray(mesh.faces, dtype=np.uint32)
    vmapping, indices, uvs = xatlas.parametrize(vertices, faces)
    vmapping = np.asarray(vmapping, dtype=np.int64)
    colors = None
    if mesh.vertex_colors is not None:
        colors = np.asarray(mesh.vertex_colors, dtype=np.float32)[vmapping]
    out = TriangleMesh(
        vertices=vertices[vmapping],
        faces=np.asarray(indices, dtype=np.int64),
        vertex_colors=colors,
    )
    return out, np.clip(np.asarray(uvs, dtype=np.float32), 0.0, 1.0)
