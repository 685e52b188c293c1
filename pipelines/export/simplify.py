"""Quadric mesh decimation."""

from __future__ import annotations

import fast_simplification
import numpy as np
from scipy.spatial import cKDTree

from pipelines.export.threads import export_threads
from pipelines.geometry import TriangleMesh


def simplify_mesh(mesh: TriangleMesh, ratio: float) -> TriangleMesh:
    """Remove the fraction ``ratio`` of the faces by quadric edge collapse.

    ``ratio`` follows the official export: 0.7 keeps 30 % of the faces.  The
    result hits the requested face count to within a few faces on ordinary
    meshes (each collapse removes two faces).

    Vertex colours, when present, are carried over from the nearest input
    vertex: collapsed vertices move only slightly, so the nearest original
    vertex is a faithful colour source.
    """
    if not 0.0 <= ratio < 1.0:
        raise ValueError(f"ratio must be in [0, 1), got {ratio}")
    if ratio == 0.0 or len(mesh.faces) == 0:
        return TriangleMesh(
            vertices=mesh.vertices.astype(np.float32, copy=True),
            faces=mesh.faces.astype(np.int64, copy=True),
            vertex_colors=None if mesh.vertex_colors is None else mesh.vertex_colors.copy(),
        )
    vertices, faces = fast_simplification.simplify(
        np.ascontiguousarray(mesh.vertices, dtype=np.float32),
        np.ascontiguousarray(mesh.faces, dtype=np.int32),
        target_reduction=float(ratio),
    )
    vertices = np.asarray(vertices, dtype=np.float32)
    faces = np.asarray(faces, dtype=np.int64)
    colors = None
    if mesh.vertex_colors is not None:
        # An unbalanced tree builds faster; the queries run on the export's threads.
        tree = cKDTree(mesh.vertices, balanced_tree=False, compact_nodes=False)
        _, nearest = tree.query(vertices, workers=export_threads() or -1)  # -1: every core
        colors = np.asarray(mesh.vertex_colors, dtype=np.float32)[nearest]
    return TriangleMesh(vertices=vertices, faces=faces, vertex_colors=colors)
