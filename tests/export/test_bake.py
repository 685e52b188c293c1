"""Texture baking from the five canonical views of a synthetic subject."""

from __future__ import annotations

import numpy as np
import torch

from export.meshes import bumpy_sphere
from export.scene import render_stage1_views
from export.texture_check import visible_texel_psnr
from pipelines.export.bake import BakeConfig, bake_texture, inpaint_outside_charts
from pipelines.export.raster import rasterize_uv
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
