"""Stage 2 of the preview method: the inflated body as a textured GLB and a PLY.

Numbered steps, each reported through ``callback("stage2", step, 5)``:

1. **body**: the closed body of stage 1 (rebuilt from ``input_image`` when the
   stage-1 output came from disk and carries no extras);
2. **simplify**: quadric decimation removing the fraction ``simplify`` of faces
   (``pipelines.export.simplify``), then ``topology.py`` keeps it closed;
3. **unwrap**: UV charts from xatlas (``pipelines.export.uv``);
4. **bake**: every texel of a ``texture_size`` texture is located on the
   surface (``pipelines.export.raster``) and coloured by projection, with the
   same front/back colour function as the stage-1 views; empty texels next to
   charts take the nearest chart colour so that seams do not bleed;
5. **export**: GLB (y-up, one PBR material) and PLY with vertex colours
   (``pipelines.export.gltf``).

Steps 2-5 run on the process's export threads (``pipelines.export.threads``).
``generator``, ``num_steps`` and ``cfg_strength`` are accepted for interface
compatibility and ignored: nothing here is random.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch
from PIL import Image
from scipy import ndimage
from scipy.spatial import cKDTree

from pipelines.base import MeshOutput, MultiviewOutput, PipelineInputError, ProgressCallback
from pipelines.export.gltf import glb_bytes, ply_bytes
from pipelines.export.raster import rasterize_uv
from pipelines.export.simplify import simplify_mesh
from pipelines.export.threads import export_thread_limit
from pipelines.export.uv import unwrap_uv
from pipelines.geometry import TriangleMesh
from pipelines.preview.appearance import Appearance
from pipelines.preview.config import PreviewConfig
from pipelines.preview.inflation import body_mesh, vertex_normals
from pipelines.preview.stage1 import body_from_views
from pipelines.preview.topology import repair_closed_manifold

STAGE = "stage2"
NUM_STEPS = 5


class PreviewMeshPipeline:
    """:class:`MultiviewOutput` of the preview stage 1 -> textured :class:`MeshOutput`."""

    def __init__(self, config: PreviewConfig | None = None) -> None:
        self.config = config or PreviewConfig()

    @classmethod
    def from_pretrained(cls, weights_dir: Any = None, *, device: str = "cpu", dtype: Any = None):
        """The preview method has no weights; the arguments exist for interface parity."""
        if device != "cpu":
            raise ValueError("the preview pipeline runs on the CPU only")
        return cls()

    def check_inputs(self, views: Any, texture_size: int, simplify: float) -> None:
        if not isinstance(views, MultiviewOutput):
            raise PipelineInputError("invalid_input", "stage 2 needs the output of stage 1")
        if not 64 <= int(texture_size) <= 4096:
            raise PipelineInputError("invalid_options", "texture_size must lie in [64, 4096]")
        if not 0.0 <= float(simplify) < 1.0:
            raise PipelineInputError("invalid_options", "simplify must lie in [0, 1)")

    def __call__(
        self,
        views: MultiviewOutput,
        *,
        generator: Any = None,
        callback: ProgressCallback | None = None,
        num_steps: int = 25,
        cfg_strength: float = 5.0,
        texture_size: int = 1024,
        simplify: float = 0.7,
    ) -> MeshOutput:
        self.check_inputs(views, texture_size, simplify)
        timings: dict[str, float] = {}
        last = time.perf_counter()

        def step(name: str, index: int) -> None:
            nonlocal last
            now = time.perf_counter()
            timings[name] = now - last
            last = now
            if callback is not None:
                callback(STAGE, index, NUM_STEPS)

        # 1. the closed body of stage 1
        shape, appearance = body_from_views(views, self.config)
        mesh = views.extras.get("mesh")
        if mesh is None:
            mesh, _ = body_mesh(shape, self.config.inflation)
        step("body", 1)

        with export_thread_limit():  # steps 2-5 are the export: the process's export threads
            # 2. simplify
            simple = simplify_mesh(TriangleMesh(vertices=mesh.vertices, faces=mesh.faces), float(simplify))
            simple = repair_closed_manifold(simple)
            normals = vertex_normals(simple.vertices, simple.faces)  # (V, 3)
            simple.vertex_colors = appearance.colors(simple.vertices, normals)
            step("simplify", 2)

            # 3. UV charts (seam vertices are duplicated; find each one's source vertex for its normal)
            unwrapped, uvs = unwrap_uv(simple)
            _, source = cKDTree(simple.vertices).query(unwrapped.vertices)
            unwrapped_normals = normals[source]  # (V', 3)
            step("unwrap", 3)

            # 4. bake the texture by projection
            texture = bake_texture(
                unwrapped, unwrapped_normals, uvs, appearance, int(texture_size), self.config.texture_dilation
            )
            step("bake", 4)

            # 5. export
            glb = glb_bytes(unwrapped, uvs, texture)
            ply = ply_bytes(simple)
            step("export", 5)

        return MeshOutput(
            glb=glb,
            mesh_ply=ply,
            num_vertices=len(unwrapped.vertices),
            num_faces=len(unwrapped.faces),
            timings=timings,
        )


def bake_texture(
    mesh: TriangleMesh,
    normals: np.ndarray,
    uvs: np.ndarray,
    appearance: Appearance,
    size: int,
    dilation: int,
) -> Image.Image:
    """(size, size) RGB texture: each texel coloured at its surface point by ``appearance``."""
    faces_t = torch.from_numpy(np.ascontiguousarray(mesh.faces, dtype=np.int64))
    raster = rasterize_uv(faces_t, torch.from_numpy(np.ascontiguousarray(uvs, dtype=np.float32)), size)
    face_id = raster.face_id.numpy()  # (S, S), -1 where no chart
    covered = face_id >= 0
    rows, cols = np.nonzero(covered)
    corners = mesh.faces[face_id[rows, cols]]  # (K, 3) vertex ids of each covered texel's face
    bary = raster.bary.numpy()[rows, cols][..., None]  # (K, 3, 1)
    points = (bary * mesh.vertices[corners]).sum(axis=1)  # (K, 3)
    texel_normals = (bary * normals[corners]).sum(axis=1)  # (K, 3)
    texel_normals /= np.maximum(np.linalg.norm(texel_normals, axis=-1, keepdims=True), 1e-8)
    texture = np.ones((size, size, 3), dtype=np.float32)
    texture[rows, cols] = appearance.colors(points, texel_normals)
    if dilation > 0 and covered.any():
        distance, (near_r, near_c) = ndimage.distance_transform_edt(~covered, return_indices=True)
        spill = (~covered) & (distance <= dilation)
        texture[spill] = texture[near_r[spill], near_c[spill]]
    return Image.fromarray(np.round(texture * 255.0).astype(np.uint8), mode="RGB")
