"""The whole export, through the entry point stage 2 calls."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
import trimesh

from tests.pipelines.export.meshes import bumpy_sphere
from tests.pipelines.export.scene import color_field, render_stage1_views, surface_gaussians
from tests.pipelines.export.texture_check import visible_texel_psnr
from tests.support.gltf_validation import validate_glb
from pipelines.export.holes import HoleFillConfig
from pipelines.export.textured import ExportConfig, export_textured_mesh
from pipelines.geometry import TriangleMesh

SMALL = ExportConfig(
    hole_fill=HoleFillConfig(num_views=24, resolution=64),
    gaussian_views=8,
    gaussian_resolution=96,
)


@pytest.fixture(scope="module")
def subject():
    mesh = bumpy_sphere(4)
    inner = bumpy_sphere(1, radius=0.15, seed=2)  # hidden inside: the export must drop it
    combined = TriangleMesh(
        vertices=np.concatenate([mesh.vertices, inner.vertices]),
        faces=np.concatenate([mesh.faces, inner.faces + len(mesh.vertices)]),
    )
    return combined, render_stage1_views(mesh, 128), surface_gaussians(mesh, 8000)


def _load(glb: bytes):
    scene = trimesh.load(io.BytesIO(glb), file_type="glb")
    (mesh,) = scene.geometry.values()
    return mesh


def test_export_writes_a_valid_textured_glb(subject):
    mesh, views, gaussians = subject
    calls = []
    cpu_timings = {}
    out = export_textured_mesh(
        mesh,
        views,
        gaussians=gaussians,
        texture_size=128,
        simplify=0.5,
        bake_steps=40,
        callback=lambda *args: calls.append(args),
        config=SMALL,
        cpu_timings=cpu_timings,
    )
    # the export announces itself before its first phase and after each CPU phase (a cancel can stop
    # it there), then counts the bake steps
    assert calls[:4] == [("export", 0, 40)] * 4
    assert calls[4:] == [("export", step, 40) for step in range(1, 41)]
    phases = {"simplify", "holes", "holes.visibility", "holes.cut", "uv", "observe", "bake", "encode", "bake.optimize"}
    assert phases <= set(out.timings)
    assert set(cpu_timings) == set(out.timings) and all(seconds >= 0 for seconds in cpu_timings.values())

    report = validate_glb(out.glb)
    assert report["issues"]["numErrors"] == 0, report["issues"]["messages"]

    loaded = _load(out.glb)
    assert len(loaded.faces) == out.num_faces and len(loaded.vertices) == out.num_vertices
    texture = np.asarray(loaded.visual.material.baseColorTexture.convert("RGB"))
    assert texture.shape == (128, 128, 3)
    # Back to the official frame: glTF (x, y, z) = official (x, z, -y).
    official = np.stack([loaded.vertices[:, 0], -loaded.vertices[:, 2], loaded.vertices[:, 1]], axis=1)
    # The hidden inner sphere is gone; the simplified outer sphere stays.
    assert np.linalg.norm(official, axis=1).min() > 0.37
    assert abs(len(loaded.faces) - 0.5 * len(bumpy_sphere(4).faces)) <= 0.02 * len(bumpy_sphere(4).faces)
    assert visible_texel_psnr(official, loaded.faces, loaded.visual.uv, texture) >= 30.0

    ply = trimesh.load(io.BytesIO(out.mesh_ply), file_type="ply", process=False)
    assert np.linalg.norm(ply.vertices, axis=1).min() > 0.37  # z-up frame, same surface
    expected = color_field(torch.as_tensor(np.asarray(ply.vertices), dtype=torch.float32)).numpy()
    assert np.median(np.abs(ply.visual.vertex_colors[:, :3] / 255.0 - expected)) < 0.05


def test_callback_can_cancel_the_export(subject):
    mesh, views, _ = subject

    class Cancelled(Exception):
        pass

    def callback(stage, step, total):
        if step == 3:
            raise Cancelled

    with pytest.raises(Cancelled):
        export_textured_mesh(
            mesh, views, texture_size=32, simplify=0.0, bake_steps=10, callback=callback,
            config=ExportConfig(hole_fill=None),
        )


@pytest.mark.slow  # the whole export at its default settings
def test_default_cpu_settings_export_quickly_and_well(subject):
    """Without a config, a CPU export uses ``ExportConfig.for_device('cpu')``: the full chain
    on fewer and smaller views, still removing the inner shell and reproducing the texture."""
    mesh, views, gaussians = subject
    calls = []
    out = export_textured_mesh(
        mesh, views, gaussians=gaussians, texture_size=256, simplify=0.5, callback=lambda *args: calls.append(args)
    )
    steps = ExportConfig.for_device("cpu").bake.steps
    assert steps < ExportConfig.for_device("cuda").bake.steps
    assert calls[-1] == ("export", steps, steps)
    loaded = _load(out.glb)
    texture = np.asarray(loaded.visual.material.baseColorTexture.convert("RGB"))
    official = np.stack([loaded.vertices[:, 0], -loaded.vertices[:, 2], loaded.vertices[:, 1]], axis=1)
    assert np.linalg.norm(official, axis=1).min() > 0.37
    assert visible_texel_psnr(official, loaded.faces, loaded.visual.uv, texture) >= 30.0
