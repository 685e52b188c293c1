"""Gaussian splatting against closed-form values and the mesh rasteriser."""

from __future__ import annotations

import math

import numpy as np
import torch

from tests.pipelines.export.meshes import bumpy_sphere
from tests.pipelines.export.scene import color_field, surface_gaussians
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


def _composite_every_pixel(g: GaussianTensors, camera, config: SplatConfig):
    """Reference renderer: every Gaussian at every pixel, composited one by one in depth order."""
    from pipelines.export.splat import _project

    mean, depth, cov2d, valid = _project(g, camera, config)
    a = cov2d[:, 0, 0] + config.kernel_size
    c = cov2d[:, 1, 1] + config.kernel_size
    b = cov2d[:, 0, 1]
    det = a * c - b * b
    det0 = cov2d[:, 0, 0] * cov2d[:, 1, 1] - b * b
    opacity = g.opacity * torch.sqrt((det0 / det).clamp(min=2.5e-5))
    centre = torch.arange(camera.size, dtype=torch.float32) + 0.5
    py, px = torch.meshgrid(centre, centre, indexing="ij")
    color = torch.zeros(camera.size, camera.size, 3)
    transmittance = torch.ones(camera.size, camera.size)
    for i in torch.argsort(depth).tolist():
        if not valid[i]:
            continue
        dx, dy = px - mean[i, 0], py - mean[i, 1]
        power = -0.5 * (c[i] * dx**2 + a[i] * dy**2 - 2 * b[i] * dx * dy) / det[i]
        alpha = (opacity[i] * torch.exp(power.clamp(max=0.0))).clamp(max=0.99)
        alpha = torch.where(alpha >= 1.0 / 255.0, alpha, torch.zeros_like(alpha))
        color += (alpha * transmittance).unsqueeze(-1) * g.colors[i]
        transmittance = transmittance * (1.0 - alpha)
    return color.clamp(0.0, 1.0), 1.0 - transmittance


def test_tiled_compositing_matches_per_pixel_compositing():
    """Tiles, depth sorting and the chunked segmented products change nothing: with a footprint
    wide enough to hold every contribution above 1/255, the result equals plain compositing."""
    rng = np.random.default_rng(3)
    count = 150
    gaussians = GaussianTensors.from_gaussians(
        Gaussians(
            xyz=rng.uniform(-0.35, 0.35, (count, 3)).astype(np.float32),
            scaling=rng.uniform(0.01, 0.06, (count, 3)).astype(np.float32),
            rotation=rng.normal(size=(count, 4)).astype(np.float32),
            opacity=rng.uniform(0.3, 1.0, (count, 1)).astype(np.float32),
            colors=rng.uniform(0.0, 1.0, (count, 3)).astype(np.float32),
        )
    )
    for camera in [sphere_cameras(7, 48)[2], canonical_cameras(40)[1]]:
        expected_image, expected_alpha = _composite_every_pixel(gaussians, camera, SplatConfig(sigma_extent=4.0))
        assert expected_alpha.max() > 0.9  # the Gaussians overlap: compositing order matters
        for tile, pixels_per_chunk in [(8, 64 * 40), (16, 256 * 25), (16, 1 << 24)]:
            config = SplatConfig(sigma_extent=4.0, tile=tile, pixels_per_chunk=pixels_per_chunk)
            image, alpha = render_gaussians(gaussians, camera, config=config)
            assert (alpha - expected_alpha).abs().max() < 1e-4
            assert (image - expected_image).abs().max() < 1e-4
