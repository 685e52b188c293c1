"""Serialisation of the exported mesh: textured GLB (y-up) and PLY (z-up)."""

from __future__ import annotations

import numpy as np
import trimesh
from PIL import Image

from pipelines.geometry import TriangleMesh

Z_UP_TO_Y_UP = np.array([[1, 0, 0], [0, 0, 1], [0, -1, 0]], dtype=np.float32)
"""Rows map official (x, y, z) to glTF (x, z, -y): the subject's front (-y) faces +Z."""


def to_y_up(vertices: np.ndarray) -> np.ndarray:
    """(V, 3) official z-up positions -> (V, 3) glTF y-up positions."""
    return (np.asarray(vertices, dtype=np.float32) @ Z_UP_TO_Y_UP.T).astype(np.float32)


DEGENERATE_NORMAL = np.array([0.0, 1.0, 0.0])
"""The normal given to positions that only zero-area faces touch."""


def smooth_normals(vertices: np.ndarray, faces: np.ndarray, groups: np.ndarray | None = None) -> np.ndarray:
    """(V, 3) unit vertex normals, area-weighted, shared by all copies of a position.

    UV seams duplicate vertices; averaging over every face around a *position*
    (not a vertex id) keeps the shading continuous across seams.  ``groups``
    (V,) int, when the caller knows it (``unwrap_uv``'s source vertex of each
    vertex), labels the copies of one position; otherwise equal positions are
    found by sorting.
    """
    if groups is None:
        _, groups = np.unique(vertices, axis=0, return_inverse=True)
    groups = np.asarray(groups, dtype=np.int64).reshape(-1)
    num_groups = int(groups.max(initial=-1)) + 1
    corners = vertices[faces]  # (F, 3, 3)
    face_normals = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])  # (F, 3), |n| = 2 area
    corner_group = groups[faces].reshape(-1)  # (3F,)
    sums = np.stack(
        [np.bincount(corner_group, np.repeat(face_normals[:, k], 3), minlength=num_groups) for k in range(3)], axis=1
    )  # (G, 3) float64
    normals = sums[groups]
    length = np.linalg.norm(normals, axis=1, keepdims=True)
    # A position only degenerate (zero-area) faces touch has no direction of its own;
    # glTF requires unit normals, and any unit vector shades a face of no area alike.
    normals = np.where(length > 1e-12, normals / np.maximum(length, 1e-12), DEGENERATE_NORMAL)
    return normals.astype(np.float32)


def glb_bytes(mesh: TriangleMesh, uvs: np.ndarray, texture: Image.Image, *, groups: np.ndarray | None = None) -> bytes:
    """A binary glTF with one textured PBR material.

    ``mesh`` is in the official z-up frame and is rotated to y-up.  ``uvs`` are
    (V, 2) per-vertex coordinates with v up (``uv.unwrap_uv``'s convention);
    ``texture`` is the base-colour image (stored as PNG).  The material is
    non-metallic with roughness 1 and a white base-colour factor, as the
    official export writes it.  ``groups`` is passed to ``smooth_normals``.
    """
    uvs = np.asarray(uvs, dtype=np.float32)
    if uvs.shape != (len(mesh.vertices), 2):
        raise ValueError(f"uvs must be ({len(mesh.vertices)}, 2), got {uvs.shape}")
    material = trimesh.visual.material.PBRMaterial(
        baseColorTexture=texture.convert("RGB"),
        baseColorFactor=[255, 255, 255, 255],
        metallicFactor=0.0,
        roughnessFactor=1.0,
    )
    visual = trimesh.visual.TextureVisuals(uv=uvs, material=material)
    vertices = to_y_up(mesh.vertices)
    faces = np.asarray(mesh.faces, dtype=np.int64)
    tm = trimesh.Trimesh(
        vertices=vertices,
        faces=faces,
        vertex_normals=smooth_normals(vertices, faces, groups),
        visual=visual,
        process=False,
    )
    # trimesh writes TEXCOORD_0 as (u, 1 - v): glTF's origin is the image's top left.
    return trimesh.exchange.gltf.export_glb(tm, include_normals=True)


def ply_bytes(mesh: TriangleMesh) -> bytes:
    """Binary little-endian PLY in the official z-up frame.

    Vertex colours, when the mesh has them, are written as 8-bit RGBA.
    """
    colors = None
    if mesh.vertex_colors is not None:
        rgb = np.clip(np.asarray(mesh.vertex_colors, dtype=np.float32), 0.0, 1.0)
        colors = np.concatenate(
            [np.round(rgb * 255.0).astype(np.uint8), np.full((len(rgb), 1), 255, np.uint8)], axis=1
        )
    tm = trimesh.Trimesh(
        vertices=np.asarray(mesh.vertices, dtype=np.float32),
        faces=np.asarray(mesh.faces, dtype=np.int64),
        vertex_colors=colors,
        process=False,
    )
    return trimesh.exchange.ply.export_ply(tm, encoding="binary")
