"""The finished model as the extra outputs read it: one textured mesh, from the GLB.

Every extra output (thumbnail, turntable, USDZ, OBJ) starts from the GLB the
export wrote, so they all show exactly what the user downloads, whichever
method produced it.  The GLB is in glTF's frame: y up, metres, the subject's
front facing +z.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import trimesh
from PIL import Image

from pipelines.base import PipelineInputError


@dataclass
class TexturedModel:
    """One mesh with per-vertex UVs and a base-colour texture, y up."""

    vertices: np.ndarray
    """(V, 3) float32 positions in metres."""
    normals: np.ndarray
    """(V, 3) float32 unit vertex normals."""
    faces: np.ndarray
    """(F, 3) int32 vertex indices, counter-clockwise seen from outside."""
    uvs: np.ndarray
    """(V, 2) float32 texture coordinates with v up (OpenGL's convention: v = 0 is the image's bottom row)."""
    texture: Image.Image
    """The base-colour texture, RGB (sRGB)."""

    @property
    def bounds(self) -> np.ndarray:
        """(2, 3) float32: the lowest and highest corner of the axis-aligned box."""
        return np.stack([self.vertices.min(axis=0), self.vertices.max(axis=0)])


UNTEXTURED_COLOR = (200, 200, 200)
"""The colour of a mesh that has no base-colour texture (a 1 x 1 texture of it stands in)."""


def load_glb(glb: bytes) -> TexturedModel:
    """The GLB's one mesh, with its node transform applied.

    The export writes one mesh with UVs and a base-colour texture; a mesh
    without them is shown plain light grey.  Raises
    ``PipelineInputError('invalid_model')`` unless the file holds exactly one
    triangle mesh.
    """
    scene = trimesh.load(io.BytesIO(glb), file_type="glb", force="scene", process=False)
    meshes = [m for m in scene.dump() if isinstance(m, trimesh.Trimesh) and len(m.faces)]
    if len(meshes) != 1:
        raise PipelineInputError("invalid_model", f"the model must be one mesh, it has {len(meshes)}")
    mesh = meshes[0]
    texture = _base_color(mesh)
    if texture is None:
        texture, uvs = Image.new("RGB", (1, 1), UNTEXTURED_COLOR), np.zeros((len(mesh.vertices), 2), np.float32)
    else:
        uvs = np.asarray(mesh.visual.uv, dtype=np.float32)
    return TexturedModel(
        vertices=np.asarray(mesh.vertices, dtype=np.float32),
        normals=np.asarray(mesh.vertex_normals, dtype=np.float32),
        faces=np.asarray(mesh.faces, dtype=np.int32),
        uvs=uvs,
        texture=texture.convert("RGB"),
    )


def _base_color(mesh: trimesh.Trimesh) -> Image.Image | None:
    visual = mesh.visual
    if not isinstance(visual, trimesh.visual.TextureVisuals) or visual.uv is None:
        return None
    material = visual.material
    return getattr(material, "baseColorTexture", None) or getattr(material, "image", None)
