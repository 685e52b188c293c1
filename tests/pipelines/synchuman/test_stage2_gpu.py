"""Stage 2 on CUDA computes what it computes on the CPU (small random models)."""

from __future__ import annotations

import pytest
import torch

from pipelines.synchuman.sparse.tensor import SparseVoxels
from pipelines.synchuman.stage2.decoder_trunk import DecoderConfig
from pipelines.synchuman.stage2.flow_model import SLatFlowConfig, SLatFlowModel
from pipelines.synchuman.stage2.gaussian_decoder import SLatGaussianDecoder
from pipelines.synchuman.stage2.mesh_extraction import extract_mesh
from pipelines.synchuman.stage2.sampler import GuidanceIntervalSamplerConfig, sample_guidance_interval

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


def _ball_coords(radius: float = 9.0) -> torch.Tensor:
    axis = torch.arange(64)
    grid = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), -1).reshape(-1, 3)
    inside = ((grid.float() + 0.5 - 32).norm(dim=1) <= radius) & ((grid.float() + 0.5 - 32).norm(dim=1) > radius - 3)
    xyz = grid[inside]
    return torch.cat([torch.zeros(len(xyz), 1, dtype=torch.long), xyz], 1).int()


def _randomise(model: torch.nn.Module) -> torch.nn.Module:
    torch.manual_seed(0)
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.1)
    return model.eval()


@torch.no_grad()
def test_flow_sampler_cuda_matches_cpu():
    config = SLatFlowConfig(model_channels=128, cond_channels=64, num_blocks=2, num_heads=2, io_block_channels=[32])
    model = _randomise(SLatFlowModel(config))
    coords = _ball_coords()
    gen = torch.Generator().manual_seed(1)
    noise = torch.randn(len(coords), 8, generator=gen)
    cond = torch.randn(1, 77, 64, generator=gen)
    sampler = GuidanceIntervalSamplerConfig(steps=3)
    cpu = sample_guidance_interval(model, SparseVoxels(coords, noise), cond, torch.zeros_like(cond), sampler, batch_guidance=False)
    model.cuda()
    gpu = sample_guidance_interval(
        model, SparseVoxels(coords.cuda(), noise.cuda()), cond.cuda(), torch.zeros_like(cond).cuda(), sampler
    )
    assert (gpu.cpu() - cpu).abs().max() <= 1e-3 * max(1.0, cpu.abs().max().item())
    model.convert_torso(torch.float16)
    half = sample_guidance_interval(
        model, SparseVoxels(coords.cuda(), noise.cuda()), cond.cuda(), torch.zeros_like(cond).cuda(), sampler
    )
    assert torch.isfinite(half).all()
    assert (half.cpu() - cpu).abs().max() <= 0.05 * max(1.0, cpu.abs().max().item())


@torch.no_grad()
def test_gaussian_decoder_cuda_matches_cpu():
    rep = {
        "lr": {"_xyz": 1.0, "_features_dc": 1.0, "_opacity": 1.0, "_scaling": 1.0, "_rotation": 0.1},
        "perturb_offset": True, "voxel_size": 1.5, "num_gaussians": 4, "3d_filter_kernel_size": 9e-4,
        "scaling_bias": 4e-3, "opacity_bias": 0.1,
    }  # fmt: skip
    config = DecoderConfig(model_channels=64, num_blocks=2, num_heads=2, mv_dim=16, representation_config=rep)
    decoder = _randomise(SLatGaussianDecoder(config))
    coords = _ball_coords()
    gen = torch.Generator().manual_seed(2)
    slat = torch.randn(len(coords), 8, generator=gen)
    maps = torch.randn(1, 4, 64, 64, 64, generator=gen)
    cpu = decoder.raw_output(SparseVoxels(coords, slat), maps, maps * 0.5)
    decoder.cuda()
    gpu = decoder.raw_output(SparseVoxels(coords.cuda(), slat.cuda()), maps.cuda(), maps.cuda() * 0.5)
    assert (gpu.cpu() - cpu).abs().max() <= 1e-4 * max(1.0, cpu.abs().max().item())


@torch.no_grad()
def test_mesh_extraction_cuda_matches_cpu():
    axis = torch.arange(96, 160)
    grid = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), -1).reshape(-1, 3)
    radius = (grid.float() + 0.5 - 128).norm(dim=1)
    coords = grid[(radius > 22) & (radius < 28)]  # a shell of cells of the 256^3 grid
    corners = torch.tensor([(j & 1, (j >> 1) & 1, (j >> 2) & 1) for j in range(8)])
    points = (coords.unsqueeze(1) + corners).float()  # (M, 8, 3)
    sdf = ((points - 128).norm(dim=-1) - 25.0) / 256
    feats = torch.zeros(len(coords), 101)
    feats[:, :8] = sdf
    cpu = extract_mesh(coords, feats)
    gpu = extract_mesh(coords.cuda(), feats.cuda())
    assert cpu.faces.shape[0] > 1000
    assert torch.equal(cpu.faces, gpu.faces.cpu())
    assert (cpu.vertices - gpu.vertices.cpu()).abs().max() < 1e-5
