"""The synthetic subject of the export benchmarks: a standing figure of known colour.

The figure is the union of the capsules of ``bench.person_occupancy`` (scaled
like the stage-1 occupancy), turned into a surface by marching cubes on its
signed distance field with small bumps, plus a hidden inner sphere in the
torso, so that every export phase has real work.  The face count grows with
the square of the grid: ``grid_for_faces`` picks the grid for a target count
(288 -> 267 k faces, 400 -> 512 k, 790 -> 1.99 M).  Its colour is a smooth
function of position (``color_field``), so the texture a bake should produce is
known: ``texture_psnr`` compares a GLB's texture with it.
"""

from __future__ import annotations

import io
import math

import numpy as np
import torch
import trimesh
from PIL import Image
from skimage.measure import marching_cubes

from bench.person_occupancy import CAPSULES
from pipelines.base import MultiviewOutput
from pipelines.export.cameras import canonical_cameras
from pipelines.export.raster import rasterize, rasterize_uv
from pipelines.geometry import Gaussians, TriangleMesh

FACES_AT_GRID_288 = 266_878


def color_field(points: torch.Tensor) -> torch.Tensor:
    """(..., 3) positions -> (..., 3) RGB: smooth stripes that differ on every side."""
    x, y, z = points[..., 0], points[..., 1], points[..., 2]
    return torch.stack(
        [0.5 + 0.4 * torch.sin(12 * x + 1), 0.5 + 0.4 * torch.sin(9 * z), 0.5 + 0.4 * torch.cos(14 * y + 3 * z)], dim=-1
    )


def grid_for_faces(faces: int) -> int:
    """The marching-cubes grid whose figure has about ``faces`` faces."""
    return int(round(288 * math.sqrt(faces / FACES_AT_GRID_288)))


def _signed_distance(grid: int) -> np.ndarray:
    """(G, G, G) float32 distance to the figure at the cell centres, plus bumps of 2e-3.

    Each capsule is evaluated only inside its bounding box (the rest of the
    volume stays at 1, far outside), so a 790^3 volume takes seconds.
    """
    axis = (np.arange(grid, dtype=np.float32) + 0.5) / grid - 0.5
    volume = np.ones((grid, grid, grid), np.float32)
    centre = np.array([32.0, 32.0, 32.0])
    for start, end, radius in CAPSULES:
        a = ((np.array(start) - centre) * 1.15 + centre) / 64 - 0.5
        b = ((np.array(end) - centre) * 1.15 + centre) / 64 - 0.5
        r = radius * 1.15 * 1.3 / 64
        lo = np.searchsorted(axis, np.minimum(a, b) - r - 0.02)
        hi = np.searchsorted(axis, np.maximum(a, b) + r + 0.02)
        x = axis[lo[0] : hi[0], None, None]
        y = axis[None, lo[1] : hi[1], None]
        z = axis[None, None, lo[2] : hi[2]]
        ab = (b - a).astype(np.float32)
        t = np.clip(((x - a[0]) * ab[0] + (y - a[1]) * ab[1] + (z - a[2]) * ab[2]) / float(ab @ ab), 0, 1)
        dist = np.sqrt((x - a[0] - t * ab[0]) ** 2 + (y - a[1] - t * ab[1]) ** 2 + (z - a[2] - t * ab[2]) ** 2) - r
        box = volume[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
        np.minimum(box, dist, out=box)
    bump_y = np.sin(80 * axis)[:, None] * np.sin(70 * axis)[None, :]  # (G, G) over (y, z)
    for i, bump_x in enumerate(np.sin(90 * axis)):
        volume[i] += 0.002 * bump_x * bump_y
    return volume


def person_mesh(grid: int) -> TriangleMesh:
    """Marching-cubes surface of the capsule figure (official frame), plus a hidden inner sphere."""
    verts, faces, _, _ = marching_cubes(_signed_distance(grid), level=0.0)
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
    """The five stage-1 views of the figure (colour and normal maps on white), as stored."""
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


def print_phase_table(timings: dict[str, float], cpu_timings: dict[str, float], total_wall: float, total_cpu: float) -> None:
    """One row per phase (sub-phases indented): wall seconds, CPU seconds (all threads)."""
    print(f"{'phase':<20s} {'wall s':>8s} {'CPU s':>8s}", flush=True)
    for name, seconds in timings.items():
        label = ("  " + name) if "." in name else name
        print(f"{label:<20s} {seconds:8.3f} {cpu_timings.get(name, float('nan')):8.3f}", flush=True)
    print(f"{'total':<20s} {total_wall:8.3f} {total_cpu:8.3f}", flush=True)
