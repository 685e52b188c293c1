"""The export's rasteriser, splatting and whole chain on a CUDA GPU agree with the CPU."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
import trimesh

from tests.pipelines.export.meshes import bumpy_sphere
from tests.pipelines.export.scene import render_stage1_views, surface_gaussians
from tests.pipelines.export.texture_check import visible_texel_psnr
from pipelines.export.cameras import canonical_cameras, sphere_cameras
from pipelines.export.holes import HoleFillConfig, face_visibility
from pipelines.export.raster import rasterize
from pipelines.export.splat import GaussianTensors, SplatConfig, render_gaussians
from pipelines.export.splat_kernel import available as splat_kernel_available
from pipelines.export.textured import ExportConfig, export_textured_mesh

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]


def test_rasterizer_matches_cpu():
    mesh = bumpy_sphere(5)
    vertices = torch.from_numpy(mesh.vertices)
    faces = torch.from_numpy(mesh.faces)
    for camera in canonical_cameras(512) + sphere_cameras(4, 512):
        xy, depth, w = camera.project(vertices)
        cpu = rasterize(xy, faces, 512, 512, depth=depth, w=w)
        gpu = rasterize(xy.cuda(), faces.cuda(), 512, 512, depth=depth.cuda(), w=None if w is None else w.cuda())
        same = (cpu.face_id == gpu.face_id.cpu()).float().mean().item()
        assert same > 0.999
        both = cpu.mask & gpu.mask.cpu()
        assert torch.allclose(cpu.depth[both], gpu.depth.cpu()[both], atol=1e-4)


def test_batched_visibility_matches_cpu():
    mesh = bumpy_sphere(4)
    cpu = face_visibility(mesh, 32, 256, view_batch=4)
    gpu = face_visibility(mesh, 32, 256, view_batch=16, device="cuda")
    assert np.abs(cpu - gpu).max() <= 1.0 / 32


def test_splatting_matches_cpu():
    mesh = bumpy_sphere(4)
    gaussians = surface_gaussians(mesh, 20000)
    camera = sphere_cameras(3, 256)[1]
    cpu_image, cpu_alpha = render_gaussians(GaussianTensors.from_gaussians(gaussians), camera)
    gpu_image, gpu_alpha = render_gaussians(GaussianTensors.from_gaussians(gaussians, "cuda"), camera)
    assert (cpu_alpha - gpu_alpha.cpu()).abs().max() < 1e-3
    assert (cpu_image - gpu_image.cpu()).abs().max() < 1e-3


def test_splat_kernel_matches_the_pytorch_compositing():
    assert splat_kernel_available(torch.device("cuda")), "the GPU image must have Triton"
    mesh = bumpy_sphere(4)
    gaussians = GaussianTensors.from_gaussians(surface_gaussians(mesh, 50000), "cuda")
    for camera in sphere_cameras(3, 512) + canonical_cameras(384):
        kernel_image, kernel_alpha = render_gaussians(gaussians, camera)
        torch_image, torch_alpha = render_gaussians(gaussians, camera, config=SplatConfig(use_kernel=False))
        assert kernel_alpha.max() > 0.5  # the subject is in view
        assert (kernel_alpha - torch_alpha).abs().max() < 1e-4
        assert (kernel_image - torch_image).abs().max() < 1e-4


def test_export_on_gpu_reproduces_the_texture():
    mesh = bumpy_sphere(5)
    views = render_stage1_views(mesh, 512)
    config = ExportConfig(hole_fill=HoleFillConfig(num_views=200, resolution=512), gaussian_views=32, gaussian_resolution=512)
    out = export_textured_mesh(
        mesh, views, gaussians=surface_gaussians(mesh, 50000), texture_size=512, simplify=0.5, device="cuda", config=config
    )
    scene = trimesh.load(io.BytesIO(out.glb), file_type="glb")
    (loaded,) = scene.geometry.values()
    texture = np.asarray(loaded.visual.material.baseColorTexture.convert("RGB"))
    official = np.stack([loaded.vertices[:, 0], -loaded.vertices[:, 2], loaded.vertices[:, 1]], axis=1)
    assert visible_texel_psnr(official, loaded.faces, loaded.visual.uv, texture) >= 30.0
