"""Synthetic meshes for the export tests (small, deterministic)."""

from __future__ import annotations

import numpy as np
import trimesh

from pipelines.geometry import TriangleMesh


def bumpy_sphere(subdivisions: int = 3, radius: float = 0.4, seed: int = 0) -> TriangleMesh:
    """An icosphere with a little radial noise (xatlas dislikes perfectly regular input)."""
    sphere = trimesh.creation.icosphere(subdivisions=subdivisions, radius=radius)
    rng = np.random.default_rng(seed)
    scale = 1.0 + 0.01 * rng.random((len(sphere.vertices), 1))
    return TriangleMesh(
        vertices=(sphere.vertices * scale).astype(np.float32),
        faces=sphere.faces.astype(np.int64),
    )
