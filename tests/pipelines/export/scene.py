"""A synthetic textured subject and its stage-1 style renders, for the export tests.

The subject is a bumpy sphere whose colour is a smooth function of position
(``color_field``), so the texture any bake should produce is known exactly.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from pipelines.base import MultiviewOutput
from pipelines.export.cameras import canonical_cameras
from pipelines.export.raster import rasterize
from pipelines.geometry import Gaussians, TriangleMesh


def color_field(points: torch.Tensor) -> torch.Tensor:
    """(..., 3) positions -> (..., 3) RGB in [0.1, 0.9], smooth at the texture's scale."""
    x, y, z = points[..., 0], points[..., 1], points[..., 2]
    return torch.stack(
        [0.5 + 0.4 * torch.sin(6 * x + 1), 0.5 + 0.4 * torch.sin(5 * z), 0.5 + 0.4 * torch.cos(7 * y + 2 * z)], dim=-1
    )


def _vertex_normals(vertices: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    corners = vertices[faces]  # (F, 3, 3)
    face_n = torch.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0], dim=1)
    normals = torch.zeros_like(vertices).index_add_(0, faces.reshape(-1), face_n.repeat_interleave(3, dim=0))
    return torch.nn.functional.normalize(normals, dim=1)


def render_stage1_views(mesh: TriangleMesh, size: int) -> MultiviewOutput:
    """The five canonical views (colour on white, normals n/2 + 1/2 on white), as stage 1 stores them."""
    vertices = torch.from_numpy(mesh.vertices)
    faces = torch.from_numpy(mesh.faces)
    normals = _vertex_normals(vertices, faces)
    colors, normal_maps = [], []
    for camera in canonical_cameras(size):
        xy, depth, w = camera.project(vertices)
        raster = rasterize(xy, faces, size, size, depth=depth, w=w)
        mask = raster.mask.unsqueeze(-1)
        color = torch.where(mask, color_field(raster.interpolate(vertices, faces)), torch.ones(3))
        n = torch.nn.functional.normalize(raster.interpolate(normals, faces), dim=-1)
        normal = torch.where(mask, n * 0.5 + 0.5, torch.ones(3))
        colors.append(Image.fromarray((color.numpy() * 255 + 0.5).astype(np.uint8)))
        normal_maps.append(Image.fromarray((normal.numpy() * 255 + 0.5).astype(np.uint8)))
    return MultiviewOutput(
        source=colors[0].convert("RGBA"),
        input_image=colors[0].convert("RGBA"),
        colors=colors,
        normals=normal_maps,
        coords=np.zeros((0, 4), dtype=np.int32),
    )


def _quaternion_z_to(normals: np.ndarray) -> np.ndarray:
    """(N, 4) w x y z unit quaternions rotating +z onto each (N, 3) unit normal."""
    z = np.array([0.0, 0.0, 1.0])
    axis = np.cross(z, normals)  # (N, 3)
    q = np.concatenate([1.0 + normals[:, 2:3], axis], axis=1)
    flipped = q[:, 0] < 1e-6  # normal = -z: rotate by pi about x
    q[flipped] = [0.0, 1.0, 0.0, 0.0]
    return (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)


def surface_gaussians(mesh: TriangleMesh, count: int, seed: int = 0) -> Gaussians:
    """Flat opaque Gaussians (surfels) on the surface, coloured by ``color_field``."""
    rng = np.random.default_rng(seed)
    corners = mesh.vertices[mesh.faces]  # (F, 3, 3)
    cross = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    area = 0.5 * np.linalg.norm(cross, axis=1)
    face = rng.choice(len(mesh.faces), size=count, p=area / area.sum())
    r1, r2 = rng.random((2, count, 1))
    s = np.sqrt(r1)
    points = (1 - s) * corners[face, 0] + s * (1 - r2) * corners[face, 1] + s * r2 * corners[face, 2]
    normals = cross[face] / np.linalg.norm(cross[face], axis=1, keepdims=True)
    return Gaussians(
        xyz=points.astype(np.float32),
        scaling=np.tile(np.array([0.02, 0.02, 0.002], np.float32), (count, 1)),
        rotation=_quaternion_z_to(normals),
        opacity=np.full((count, 1), 0.95, np.float32),
        colors=color_field(torch.from_numpy(points.astype(np.float32))).numpy(),
    )
