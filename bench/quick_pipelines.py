"""Stand-in pipelines that return a tiny but valid result at once: the service without the model.

For load runs (``bench/soak.py --pipeline quick``) and the service's own tests: a
worker loads them through the operator/testing hook
``SYNCHUMAN_WORKER__PIPELINE_FACTORY=bench.quick_pipelines:load_quick_pipelines``.
They honour the pipeline contract (progress callbacks, output dataclasses) and
never fail; they are not a model and never claim to be one.
"""

from __future__ import annotations

import io
import time

import numpy as np
from PIL import Image

from pipelines.base import GenerationPipelines, MeshOutput, MultiviewOutput

VIEW_SIDE = 64
"""Views are small: these pipelines exercise the service, not the model."""
QUICK_STEPS = 3


def tiny_person_png(side: int = 96) -> bytes:
    """An RGBA cut-out with a visible foreground (what the API accepts)."""
    image = Image.new("RGBA", (side, side), (0, 0, 0, 0))
    for y in range(side // 6, side - side // 6):
        for x in range(side // 3, side - side // 3):
            image.putpixel((x, y), (180, 140, 120, 255))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def box_mesh() -> MeshOutput:
    """A box as GLB and PLY."""
    import trimesh

    box = trimesh.creation.box(extents=(0.4, 0.8, 0.2))
    return MeshOutput(glb=box.export(file_type="glb"), mesh_ply=box.export(file_type="ply"),
                      num_vertices=len(box.vertices), num_faces=len(box.faces))


class QuickStage1:
    """Five flat views and a column of voxels, after ``steps`` reported steps (``step_s`` each)."""

    def run(self, image: Image.Image, callback=None, *, steps: int = QUICK_STEPS, step_s: float = 0.0) -> MultiviewOutput:
        for step in range(1, steps + 1):
            if step_s:
                time.sleep(step_s)
            if callback is not None:
                callback("stage1", step, steps)
        rgba = image.convert("RGBA").resize((VIEW_SIDE, VIEW_SIDE))
        views = [Image.new("RGB", (VIEW_SIDE, VIEW_SIDE), (200, 180, 160)) for _ in range(5)]
        normals = [Image.new("RGB", (VIEW_SIDE, VIEW_SIDE), (128, 128, 255)) for _ in range(5)]
        coords = np.array([[0, 32, 32, z] for z in range(20, 44)], dtype=np.int32)  # (N, 4)
        return MultiviewOutput(source=image, input_image=rgba, colors=views, normals=normals, coords=coords)

    def __call__(self, image, *, generator=None, callback=None, num_inference_steps=50, guidance_scale=3.0):
        return self.run(image, callback)


class QuickStage2:
    def __call__(self, views, *, generator=None, callback=None, num_steps=25, cfg_strength=5.0,
                 texture_size=1024, simplify=0.7):
        for step in (1, 2):
            if callback is not None:
                callback("stage2", step, 2)
        return box_mesh()


def keep_image(image: Image.Image) -> Image.Image:
    """The stand-in's preprocessing: none (its inputs are shapes, not people)."""
    return image


def load_quick_pipelines(device: str = "cpu", **_: object) -> GenerationPipelines:
    return GenerationPipelines(
        name="quick",
        version="test",
        description="Stand-in pipelines that return a tiny result at once; not a model.",
        stage1=QuickStage1(),
        stage2=QuickStage2(),
        device=device,
        preprocess=keep_image,
    )
