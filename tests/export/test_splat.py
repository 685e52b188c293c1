"""Gaussian splatting against closed-form values and the mesh rasteriser."""

from __future__ import annotations

import math

import numpy as np
import torch

from export.meshes import bumpy_sphere
from export.scene import color_field, surface_gaussians
from pipelines.export.cameras import canonical_cameras, sphere_cameras
from pipelines.export.raster import rasterize
from pipelines.export.splat import GaussianTensors, SplatConfig, render_gaussians
from pipelines.geometry import Gaussians


def _single(scale, rotation=(1.0, 0.0, 0.0, 0.0), opacity=0.9) -> GaussianTensors:
    return GaussianTensors.from_gaussians(
        Gaussians(
            xyz=np.zeros((1, 3), np.float32),
            scaling=np.array([scale], np.float32),
            rotation=np.array([rotation], np.float32),
            opacity=np.array([[opacity]], np.float32),
            colors=np.array([[1.0, 0.5, 0.25]], np.float32),
        )
    )


def test_single_gaussian_matches_closed_form():
    camera = canonical_cameras(64)[0]  # 64 px per unit; the origin is at pixel (32.0, 32.0)
    image, alpha = render_gaussians(_single((0.05, 0.05, 0.05)), camera)
    var = (0.05 * 64) ** 2 + 0.1  # pixels^2, with the 0.1 dilation
    amplitude = 0.9 * math.sqrt(((0.05 * 64) ** 2 / var) ** 2)
    for row, col in [(32, 32), (32, 35), (28, 30)]:
        dx, dy = col + 0.5 - 32.0, row + 0.5 - 32.0
        expected = amplitude * math.exp(-0.5 * (dx * dx + dy * dy) / var)
        assert abs(alpha[row, col].item() - expected) < 1e-4
    np.testing.assert_allclose(image[32, 32].numpy(), alpha[32, 32].item() * np.array([1.0, 0.5, 0.25]), atol=1e-5)
    assert alpha[0, 0].item() == 0.0


def test_rotated_anisotropic_gaussian_orientation():
    camera = canonical_cameras(64)[0]  # image x = world x, image up = world z
    # Long along local x, rotated 90 degrees about y: long along world z (vertical in the image).
    half = math.sqrt(0.5)
    _, alpha = render_gaussians(_single((0.1, 0.02, 0.02), rotation=(half, 0.0, half, 0.0)), camera)
    rows = (alpha.sum(dim=1) > 0.05).sum().item()
    cols = (alpha.sum(dim=0) > 0.05).sum().item()
    assert rows > 2 * cols


def test_gaussians_agree_with_the_mesh_from_a_perspective_camera():
    mesh = bumpy_sphere(3)
    gaussians = GaussianTensors.from_gaussians(surface_gaussians(mesh, 3000))
    camera = sphere_cameras(5, 64)[1]
    image, alpha = render_gaussians(gaussians, camera, config=SplatConfig())
    xy, depth, w = camera.project(torch.from_numpy(mesh.vertices))
    raster = rasterize(xy, torch.from_numpy(mesh.faces), 64, 64, depth=depth, w=w)
    covered = alpha > 0.5
    # Same silhouette up to the Gaussians' fringe (intersection over union).
    iou = (covered & raster.mask).sum() / (covered | raster.mask).sum()
    assert iou > 0.85
    both = covered & raster.mask
    expected = color_field(raster.interpolate(torch.from_numpy(mesh.vertices), torch.from_numpy(mesh.faces)))
    got = image / alpha.clamp(min=1e-6).unsqueeze(-1)
    assert (got[both] - expected[both]).abs().median() < 0.08
