"""Texture baking from the five canonical views of a synthetic subject."""

from __future__ import annotations

import numpy as np
import torch

from tests.pipelines.export.meshes import bumpy_sphere
from tests.pipelines.export.scene import render_stage1_views
from tests.pipelines.export.texture_check import visible_texel_psnr
from pipelines.export.bake import BakeConfig, bake_texture, fill_outside_charts, inpaint_outside_charts, rasterize_views
from pipelines.export.cameras import canonical_cameras, sphere_cameras
from pipelines.export.raster import rasterize, rasterize_uv
from pipelines.export.textured import ExportConfig, stage1_observations
from pipelines.export.uv import unwrap_uv


def _subject(size: int = 128):
    mesh = bumpy_sphere(4)
    views = render_stage1_views(mesh, size)
    unwrapped, uvs = unwrap_uv(mesh)
    observations = stage1_observations(views, ExportConfig(), torch.device("cpu"))
    return unwrapped, uvs, observations


def test_optimisation_alone_recovers_the_texture():
    mesh, uvs, observations = _subject()
    # From zeros, as the official bake; a larger learning rate keeps the test short.
    config = BakeConfig(steps=300, lr=0.05, project_init=False)
    texture = bake_texture(mesh.vertices, mesh.faces, uvs, observations, 64, config=config)
    assert visible_texel_psnr(mesh.vertices, mesh.faces, uvs, texture) >= 30.0


def test_default_bake_recovers_the_texture_and_reports_progress():
    mesh, uvs, observations = _subject()
    calls = []
    texture = bake_texture(
        mesh.vertices,
        mesh.faces,
        uvs,
        observations,
        96,
        config=BakeConfig(steps=30),
        callback=lambda *args: calls.append(args),
    )
    assert texture.shape == (96, 96, 3) and texture.dtype == np.uint8
    assert visible_texel_psnr(mesh.vertices, mesh.faces, uvs, texture) >= 35.0
    assert calls == [("export", step, 30) for step in range(1, 31)]


def test_front_and_back_views_are_not_swapped():
    # Paint the front half red and the back half blue in the observations: the texels
    # of the front (y < 0) must come out red.
    mesh, uvs, observations = _subject(96)
    for index, obs in enumerate(observations):
        obs.image[:] = torch.tensor([1.0, 0.0, 0.0]) if index in (0, 4) else torch.tensor([0.0, 0.0, 1.0])
    observations = [observations[0], observations[2]]
    texture = bake_texture(mesh.vertices, mesh.faces, uvs, observations, 64, config=BakeConfig(steps=0))
    raster = rasterize_uv(torch.from_numpy(mesh.faces), torch.from_numpy(uvs), 64)
    points = raster.interpolate(torch.from_numpy(mesh.vertices), torch.from_numpy(mesh.faces))
    front = raster.mask & (points[..., 1] < -0.2)
    back = raster.mask & (points[..., 1] > 0.2)
    assert (texture[front.numpy()][:, 0] > 200).all() and (texture[front.numpy()][:, 2] < 55).all()
    assert (texture[back.numpy()][:, 2] > 200).all() and (texture[back.numpy()][:, 0] < 55).all()


def test_inpainting_fills_only_outside_the_charts():
    image = np.zeros((32, 32, 3), np.uint8)
    image[:, :16] = (200, 100, 50)
    covered = np.zeros((32, 32), bool)
    covered[:, :16] = True
    out = inpaint_outside_charts(image, covered)
    np.testing.assert_array_equal(out[:, :16], image[:, :16])
    # Texels next to the chart take its colour.
    assert np.abs(out[:, 16:19].astype(int) - np.array([200, 100, 50])).max() <= 2


def test_fill_outside_charts_is_smooth_and_bounded():
    """Unknown texels take values between the known ones, near their nearest chart's colour."""
    size = 40
    ramp = torch.linspace(0.0, 1.0, size)
    image = torch.stack([ramp.expand(size, size), ramp.expand(size, size).T, torch.full((size, size), 0.5)], -1)
    known = torch.zeros(size, size, dtype=torch.bool)
    known[5:15, 5:15] = True
    known[25:35, 22:38] = True
    filled = fill_outside_charts(image * known.unsqueeze(-1), known)
    assert torch.equal(filled[known], image[known])
    lo, hi = image[known].min(0).values, image[known].max(0).values
    assert ((filled >= lo - 1e-6) & (filled <= hi + 1e-6)).all()
    # Next to a chart, the fill is close to the chart's border texel.
    assert (filled[15, 10] - image[14, 10]).abs().max() < 0.15
    assert (filled[30, 38] - image[30, 37]).abs().max() < 0.15


def test_batched_view_rasterisation_matches_one_view_at_a_time():
    mesh = bumpy_sphere(3)
    vertices = torch.from_numpy(mesh.vertices)
    faces = torch.from_numpy(mesh.faces)
    cameras = canonical_cameras(48) + sphere_cameras(5, 40) + canonical_cameras(32)[:2]
    batched = rasterize_views(vertices, faces, cameras, batch=3)
    for camera, got in zip(cameras, batched):
        xy, depth, w = camera.project(vertices)
        alone = rasterize(xy, faces, camera.size, camera.size, depth=depth, w=w)
        assert torch.equal(got.face_id, alone.face_id)
        assert torch.allclose(got.bary, alone.bary, atol=1e-5)
        assert torch.equal(torch.isinf(got.depth), torch.isinf(alone.depth))
