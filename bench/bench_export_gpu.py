"""Time the GLB export on a GPU for a stage-2 sized mesh, phase by phase.

The subject is a standing figure (the capsules of ``bench.person_occupancy``)
turned into a surface by marching cubes on a signed distance field with small
bumps, plus a hidden inner shell in the torso, so that every phase has real
work: about 200-500 k faces before simplification.  Its colour is a smooth
function of position; the five stage-1 views (768 px, colour and normal maps,
back and left mirrored as stored) are rendered from it with the export's own
rasteriser, and about 300 k flat Gaussians are placed on its surface.

The export then runs with the official settings (simplify 0.7, 1000 visibility
views at 1024 px, 95 Gaussian views at 1024 px, 1000 bake steps, texture 1024).
Prints seconds per phase, peak allocated VRAM and the PSNR of the baked
texture against the known colours on texels facing a stored view.

Usage: ``python -m bench.bench_export_gpu [--grid 256] [--gaussians 300000] [--device cuda]``
(needs scikit-image for marching cubes).
"""

from __future__ import annotations

import argparse
import io
import time

import numpy as np
import torch
import trimesh
from PIL import Image
from skimage.measure import marching_cubes

from bench.person_occupancy import CAPSULES
from pipelines.base import MultiviewOutput
from pipelines.export.cameras import canonical_cameras
from pipelines.export.holes import face_visibility
from pipelines.export.raster import rasterize, rasterize_uv
from pipelines.export.textured import ExportConfig, export_textured_mesh
from pipelines.geometry import Gaussians, TriangleMesh


def color_field(points: torch.Tensor) -> torch.Tensor:
    """(..., 3) positions -> (..., 3) RGB: smooth stripes that differ on every side."""
    x, y, z = points[..., 0], points[..., 1], points[..., 2]
    return torch.stack(
        [0.5 + 0.4 * torch.sin(12 * x + 1), 0.5 + 0.4 * torch.sin(9 * z), 0.5 + 0.4 * torch.cos(14 * y + 3 * z)], dim=-1
    )


def person_mesh(grid: int, device: torch.device) -> TriangleMesh:
    """Marching-cubes surface of the capsule figure (official frame), plus a hidden inner sphere."""
    axis = (torch.arange(grid, device=device, dtype=torch.float32) + 0.5) / grid - 0.5
    points = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), dim=-1).view(-1, 3)  # (G^3, 3)
    sdf = torch.full((points.shape[0],), 1.0, device=device)
    centre = torch.tensor([32.0, 32.0, 32.0], device=device)
    for start, end, radius in CAPSULES:
        a = ((torch.tensor(start, device=device) - centre) * 1.15 + centre) / 64 - 0.5
        b = ((torch.tensor(end, device=device) - centre) * 1.15 + centre) / 64 - 0.5
        ab = b - a
        t = (((points - a) @ ab) / (ab @ ab).clamp(min=1e-9)).clamp(0, 1)
        dist = (points - (a + t[:, None] * ab)).norm(dim=1) - radius * 1.15 * 1.3 / 64
        sdf = torch.minimum(sdf, dist)
    bumps = 0.002 * torch.sin(90 * points[:, 0]) * torch.sin(80 * points[:, 1]) * torch.sin(70 * points[:, 2])
    volume = (sdf + bumps).view(grid, grid, grid).cpu().numpy()
    verts, faces, _, _ = marching_cubes(volume, level=0.0)
    verts = (verts + 0.5) / grid - 0.5
    corners = verts[faces]
    signed_volume = np.einsum("ij,ij->i", corners[:, 0], np.cross(corners[:, 1], corners[:, 2])).sum()
    if signed_volume < 0:
        faces = faces[:, ::-1]  # counter-clockwise seen from outside
    inner = trimesh.creation.icosphere(subdivisions=4, radius=0.04)
    torso = ((np.array(CAPSULES[0][0]) - 32.0) * 1.15 + 32.0) / 64 - 0.5 + np.array([0, 0, 0.08])
    vertices = np.concatenate([verts, inner.vertices + torso]).astype(np.float32)
    all_faces = np.concatenate([faces, inner.faces + len(verts)]).astype(np.int64)
    return TriangleMesh(vertices=vertices, faces=all_faces)


def stage1_views(mesh: TriangleMesh, size: int, device: torch.device) -> MultiviewOutput:
    vertices = torch.from_numpy(mesh.vertices).to(device)
    faces = torch.from_numpy(mesh.faces).to(device)
    corners = vertices[faces]
    face_n = torch.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0], dim=1)
    normals = torch.zeros_like(vertices).index_add_(0, faces.reshape(-1), face_n.repeat_interleave(3, dim=0))
    normals = torch.nn.functional.normalize(normals, dim=1)
    colors, normal_maps = [], []
    white = torch.ones(3, device=device)
    for camera in canonical_cameras(size):
        xy, depth, w = camera.project(vertices)
        raster = rasterize(xy, faces, size, size, depth=depth, w=w)
        mask = raster.mask.unsqueeze(-1)
        color = torch.where(mask, color_field(raster.interpolate(vertices, faces)), white)
        normal = torch.where(mask, torch.nn.functional.normalize(raster.interpolate(normals, faces), dim=-1) * 0.5 + 0.5, white)
        colors.append(Image.fromarray((color.cpu().numpy() * 255 + 0.5).astype(np.uint8)))
        normal_maps.append(Image.fromarray((normal.cpu().numpy() * 255 + 0.5).astype(np.uint8)))
    return MultiviewOutput(
        source=colors[0].convert("RGBA"),
        input_image=colors[0].convert("RGBA"),
        colors=colors,
        normals=normal_maps,
        coords=np.zeros((0, 4), np.int32),
    )


def surface_gaussians(mesh: TriangleMesh, count: int, seed: int = 0) -> Gaussians:
    """Flat Gaussians (surfels) on the surface, oriented along the face normals."""
    rng = np.random.default_rng(seed)
    corners = mesh.vertices[mesh.faces].astype(np.float64)
    cross = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    area = 0.5 * np.linalg.norm(cross, axis=1)
    face = rng.choice(len(mesh.faces), size=count, p=area / area.sum())
    r1, r2 = rng.random((2, count, 1))
    s = np.sqrt(r1)
    points = (1 - s) * corners[face, 0] + s * (1 - r2) * corners[face, 1] + s * r2 * corners[face, 2]
    normals = cross[face] / np.maximum(np.linalg.norm(cross[face], axis=1, keepdims=True), 1e-12)
    # Quaternion (w, x, y, z) turning +z onto the normal: w = 1 + n_z, axis = z x n.
    q = np.stack([1.0 + normals[:, 2], -normals[:, 1], normals[:, 0], np.zeros(count)], axis=1)
    q[q[:, 0] < 1e-6] = [0.0, 1.0, 0.0, 0.0]
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    return Gaussians(
        xyz=points.astype(np.float32),
        scaling=np.tile(np.array([0.006, 0.006, 0.001], np.float32), (count, 1)),
        rotation=q.astype(np.float32),
        opacity=np.full((count, 1), 0.95, np.float32),
        colors=color_field(torch.from_numpy(points.astype(np.float32))).numpy(),
    )


def texture_psnr(glb: bytes) -> float:
    """PSNR of the GLB's texture against ``color_field`` on texels facing a side view."""
    scene = trimesh.load(io.BytesIO(glb), file_type="glb")
    (mesh,) = scene.geometry.values()
    texture = np.asarray(mesh.visual.material.baseColorTexture.convert("RGB")).astype(np.float32) / 255.0
    v = torch.tensor(np.stack([mesh.vertices[:, 0], -mesh.vertices[:, 2], mesh.vertices[:, 1]], 1), dtype=torch.float32)
    f = torch.tensor(np.asarray(mesh.faces), dtype=torch.int64)
    raster = rasterize_uv(f, torch.tensor(np.asarray(mesh.visual.uv), dtype=torch.float32), texture.shape[0])
    c = v[f]
    n = torch.nn.functional.normalize(torch.cross(c[:, 1] - c[:, 0], c[:, 2] - c[:, 0], dim=1), dim=1)
    sides = torch.tensor([[0, -1, 0], [1, 0, 0], [0, 1, 0], [-1, 0, 0]], dtype=torch.float32)
    facing = ((n @ sides.T) > 0.3).any(1)
    visible = raster.mask & facing[raster.face_id.clamp(min=0)]
    expected = color_field(raster.interpolate(v, f))[visible].numpy()
    mse = float(((expected - texture[visible.numpy()]) ** 2).mean())
    return 10 * np.log10(1 / mse)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--grid", type=int, default=288)
    parser.add_argument("--gaussians", type=int, default=300_000)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--texture-size", type=int, default=1024)
    parser.add_argument("--bake-steps", type=int, default=None)
    parser.add_argument("--visibility-views", type=int, default=1000)
    parser.add_argument("--visibility-resolution", type=int, default=1024)
    parser.add_argument("--gaussian-views", type=int, default=95)
    parser.add_argument("--gaussian-resolution", type=int, default=1024)
    parser.add_argument("--view-size", type=int, default=768)
    args = parser.parse_args()
    device = torch.device(args.device)

    start = time.perf_counter()
    mesh = person_mesh(args.grid, device)
    views = stage1_views(mesh, args.view_size, device)
    gaussians = surface_gaussians(mesh, args.gaussians)
    print(f"subject: {len(mesh.vertices)} vertices, {len(mesh.faces)} faces, {args.gaussians} Gaussians "
          f"({time.perf_counter() - start:.1f} s to build)", flush=True)

    config = ExportConfig()
    config = ExportConfig(
        hole_fill=type(config.hole_fill)(num_views=args.visibility_views, resolution=args.visibility_resolution),
        gaussian_views=args.gaussian_views,
        gaussian_resolution=args.gaussian_resolution,
    )
    if device.type == "cuda":
        # Warm-up: kernels, allocator and lazy imports, on a small configuration.
        small = ExportConfig(hole_fill=type(config.hole_fill)(num_views=16, resolution=256), gaussian_views=4)
        export_textured_mesh(mesh, views, gaussians=gaussians, texture_size=256, bake_steps=20, device=args.device, config=small)
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()

    steps: list[int] = []
    start = time.perf_counter()
    out = export_textured_mesh(
        mesh,
        views,
        gaussians=gaussians,
        texture_size=args.texture_size,
        bake_steps=args.bake_steps,
        callback=lambda stage, step, total: steps.append(step),
        device=args.device,
        config=config,
    )
    total = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else float("nan")
    for name, seconds in out.timings.items():
        print(f"{name:<10s} {seconds:8.3f} s", flush=True)
    print(f"{'total':<10s} {total:8.3f} s   peak VRAM {peak:.2f} GiB", flush=True)
    print(f"output: {out.num_vertices} vertices, {out.num_faces} faces, GLB {len(out.glb) / 2**20:.1f} MiB, "
          f"PLY {len(out.mesh_ply) / 2**20:.1f} MiB, {len(steps)} bake steps", flush=True)
    print(f"texture PSNR on texels facing a side view: {texture_psnr(out.glb):.2f} dB", flush=True)

    # Visibility alone, for the record (part of 'holes').
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    face_visibility(mesh, args.visibility_views, args.visibility_resolution, device=args.device)
    if device.type == "cuda":
        torch.cuda.synchronize()
    print(f"visibility of the unsimplified mesh ({args.visibility_views} views): {time.perf_counter() - start:.3f} s")


if __name__ == "__main__":
    main()
