"""A small asymmetric textured model, as the export writes it: a body, a head and one raised arm.

Its texture has four coloured quadrants and its UVs are the front projection
(u from x, v from height), so a front view must show each quadrant where the
texture has it: a render that mirrors or flips shows the wrong colours.
"""

from __future__ import annotations

import numpy as np
import trimesh
from PIL import Image

from pipelines.export.gltf import glb_bytes
from pipelines.geometry import TriangleMesh

QUADRANTS = {"top_left": (220, 30, 30), "top_right": (30, 200, 40), "bottom_left": (30, 40, 220), "bottom_right": (230, 210, 20)}
"""Texture colour of each quadrant, as seen in the image (v up: 'top' is the upper half of the body)."""


def quadrant_texture(size: int = 256) -> Image.Image:
    half = size // 2
    texels = np.zeros((size, size, 3), dtype=np.uint8)
    texels[:half, :half] = QUADRANTS["top_left"]
    texels[:half, half:] = QUADRANTS["top_right"]
    texels[half:, :half] = QUADRANTS["bottom_left"]
    texels[half:, half:] = QUADRANTS["bottom_right"]
    return Image.fromarray(texels)


def figure_mesh() -> TriangleMesh:
    """In the official frame (z up, front towards -y): torso, head, and an arm raised on the +x side."""
    parts = [
        trimesh.creation.box(extents=(0.3, 0.16, 0.55), transform=trimesh.transformations.translation_matrix((0, 0, -0.2))),
        trimesh.creation.box(extents=(0.16, 0.16, 0.18), transform=trimesh.transformations.translation_matrix((0, 0, 0.2))),
        trimesh.creation.box(extents=(0.08, 0.08, 0.4), transform=trimesh.transformations.translation_matrix((0.2, 0, 0.1))),
    ]
    mesh = trimesh.util.concatenate(parts)
    mesh = mesh.subdivide().subdivide()  # enough vertices for smooth UVs over each face
    return TriangleMesh(vertices=np.asarray(mesh.vertices, np.float32), faces=np.asarray(mesh.faces, np.int64))


def figure_glb_bytes() -> bytes:
    mesh = figure_mesh()
    low, high = mesh.vertices.min(0), mesh.vertices.max(0)
    # Front projection: u grows with x, v with height (z), over the model's box.
    uvs = np.stack(
        [(mesh.vertices[:, 0] - low[0]) / (high[0] - low[0]), (mesh.vertices[:, 2] - low[2]) / (high[2] - low[2])], axis=1
    )
    return glb_bytes(mesh, uvs.astype(np.float32), quadrant_texture())
