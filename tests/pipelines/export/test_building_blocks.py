"""Simplification, UV unwrapping, rasterisation and GLB/PLY writing."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
import trimesh
from PIL import Image

from tests.pipelines.export.meshes import bumpy_sphere
from tests.support.gltf_validation import validate_glb
from pipelines.export.gltf import glb_bytes, ply_bytes, smooth_normals
from pipelines.export.raster import rasterize, rasterize_uv
from pipelines.export.simplify import simplify_mesh
from pipelines.export.uv import unwrap_uv
from pipelines.geometry import TriangleMesh


def _uv_areas(tri: np.ndarray) -> np.ndarray:
    """(F, 3, 2) UV triangles -> (F,) unsigned areas."""
    e1 = tri[:, 1] - tri[:, 0]
    e2 = tri[:, 2] - tri[:, 0]
    return 0.5 * np.abs(e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0])


@pytest.mark.parametrize("ratio", [0.3, 0.7, 0.9])
def test_simplify_hits_requested_ratio(ratio):
    mesh = bumpy_sphere(4)
    mesh.vertex_colors = np.clip(mesh.vertices + 0.5, 0, 1).astype(np.float32)
    out = simplify_mesh(mesh, ratio)
    removed = 1.0 - len(out.faces) / len(mesh.faces)
    assert abs(removed - ratio) <= 0.02
    # Colours follow positions: they were a function of the position.
    expected = np.clip(out.vertices + 0.5, 0, 1)
    assert out.vertex_colors.shape == (len(out.vertices), 3)
    assert np.abs(out.vertex_colors - expected).max() < 0.05
    # Still a closed sphere of the same size.
    tm = trimesh.Trimesh(out.vertices, out.faces, process=False)
    assert tm.is_watertight
    assert np.linalg.norm(out.vertices, axis=1).min() > 0.37


def test_unwrap_keeps_geometry_and_gives_unit_uvs():
    mesh = bumpy_sphere(3)
    out, uvs = unwrap_uv(mesh)
    assert uvs.dtype == np.float32 and uvs.shape == (len(out.vertices), 2)
    assert uvs.min() >= 0.0 and uvs.max() <= 1.0
    assert len(out.faces) == len(mesh.faces)
    # Same triangles, only re-indexed.
    before = np.sort(mesh.vertices[mesh.faces].reshape(len(mesh.faces), -1), axis=0)
    after = np.sort(out.vertices[out.faces].reshape(len(out.faces), -1), axis=0)
    np.testing.assert_allclose(before, after, atol=1e-6)
    # Charts do not overlap: the UV area is the sum of the triangle areas and below 1.
    tri = uvs[out.faces]
    area = _uv_areas(tri)
    assert 0.3 < area.sum() < 1.0


def test_rasterize_single_triangle_coverage_and_barycentrics():
    xy = torch.tensor([[0.0, 0.0], [8.0, 0.0], [0.0, 8.0]])
    faces = torch.tensor([[0, 1, 2]])
    r = rasterize(xy, faces, 8, 8)
    # Pixel centres (c + 0.5, r + 0.5) with c + r + 1 <= 8 are inside.
    rows, cols = np.mgrid[0:8, 0:8]
    expected = (rows + cols + 1) <= 8
    np.testing.assert_array_equal(r.mask.numpy(), expected)
    # Interpolating the vertex positions returns the pixel centres.
    pos = r.interpolate(xy, faces)
    np.testing.assert_allclose(pos[..., 0][r.mask].numpy(), (cols + 0.5)[expected], atol=1e-5)
    np.testing.assert_allclose(pos[..., 1][r.mask].numpy(), (rows + 0.5)[expected], atol=1e-5)


def test_rasterize_depth_test_keeps_nearest_face():
    # Two squares (two triangles each) covering the whole 16x16 image; the second is nearer.
    square = torch.tensor([[0.0, 0.0], [16.0, 0.0], [16.0, 16.0], [0.0, 16.0]])
    xy = torch.cat([square, square])
    faces = torch.tensor([[0, 1, 2], [0, 2, 3], [4, 5, 6], [4, 6, 7]])
    depth = torch.tensor([2.0] * 4 + [1.0] * 4)
    r = rasterize(xy, faces, 16, 16, depth=depth)
    assert r.mask.all()
    assert set(r.face_id.unique().tolist()) == {2, 3}
    assert torch.allclose(r.depth, torch.ones(16, 16))
    # A shared edge leaves no crack, even without the depth test.
    r2 = rasterize(square, faces[:2], 16, 16)
    assert r2.mask.all()


def test_rasterize_perspective_correct_barycentrics():
    # Vertex 1 is three times farther (w = 3): along the edge 0 -> 1, the screen fraction s
    # corresponds to the 3D fraction (s / 3) / ((1 - s) + s / 3).
    xy = torch.tensor([[0.0, 0.5], [64.0, 0.5], [0.0, 64.5]])
    faces = torch.tensor([[0, 1, 2]])
    w = torch.tensor([1.0, 3.0, 1.0])
    r = rasterize(xy, faces, 64, 64, w=w)
    b = r.bary[0, 31]  # screen x = 31.5 of 64 along the edge 0 -> 1
    s = 31.5 / 64.0
    expected_b1 = (s / 3.0) / ((1 - s) / 1.0 + s / 3.0)
    assert torch.isclose(b[1], torch.tensor(expected_b1), atol=1e-4)


def test_rasterize_uv_texels_lie_on_the_surface():
    mesh, uvs = unwrap_uv(bumpy_sphere(3))
    faces = torch.from_numpy(mesh.faces)
    r = rasterize_uv(faces, torch.from_numpy(uvs), 256)
    coverage = r.mask.float().mean().item()
    tri = uvs[mesh.faces]
    uv_area = _uv_areas(tri).sum()
    assert abs(coverage - uv_area) < 0.05
    points = r.interpolate(torch.from_numpy(mesh.vertices), faces)[r.mask]
    radius = points.norm(dim=1)
    assert radius.min() > 0.36 and radius.max() < 0.41
    # Row 0 is v = 1: the texel at the centre of a face's UV triangle maps to that face.
    centre = tri.mean(axis=1)[0]
    row = int((1.0 - centre[1]) * 256)
    col = int(centre[0] * 256)
    assert r.face_id[row, col].item() == 0


def _checker(size: int) -> Image.Image:
    rows, cols = np.mgrid[0:size, 0:size]
    red = ((rows // 8 + cols // 8) % 2 * 255).astype(np.uint8)
    return Image.fromarray(np.stack([red, np.full_like(red, 64), 255 - red], axis=-1))


def test_glb_validates_and_loads_with_texture():
    mesh, uvs = unwrap_uv(bumpy_sphere(2))
    mesh.vertices[:, 2] += 0.05  # off-centre along z so the rotation is visible
    texture = _checker(64)
    data = glb_bytes(mesh, uvs, texture)
    report = validate_glb(data)
    assert report["issues"]["numErrors"] == 0, report["issues"]["messages"]
    assert report["issues"]["numWarnings"] == 0, report["issues"]["messages"]

    scene = trimesh.load(io.BytesIO(data), file_type="glb")
    (loaded,) = scene.geometry.values()
    assert len(loaded.faces) == len(mesh.faces)
    # z-up -> y-up: (x, y, z) -> (x, z, -y).
    expected = np.stack([mesh.vertices[:, 0], mesh.vertices[:, 2], -mesh.vertices[:, 1]], axis=1)
    np.testing.assert_allclose(loaded.vertices, expected, atol=1e-6)
    np.testing.assert_allclose(loaded.visual.uv, uvs, atol=1e-6)
    material = loaded.visual.material
    assert material.roughnessFactor == 1.0
    assert material.metallicFactor == 0.0
    np.testing.assert_array_equal(np.asarray(material.baseColorTexture.convert("RGB")), np.asarray(texture))


def test_ply_round_trip_with_colours():
    mesh = bumpy_sphere(2)
    mesh.vertex_colors = np.random.default_rng(1).random((len(mesh.vertices), 3)).astype(np.float32)
    data = ply_bytes(mesh)
    assert data.startswith(b"ply\nformat binary_little_endian")
    loaded = trimesh.load(io.BytesIO(data), file_type="ply", process=False)
    np.testing.assert_allclose(loaded.vertices, mesh.vertices, atol=1e-6)
    np.testing.assert_array_equal(loaded.faces, mesh.faces)
    np.testing.assert_allclose(loaded.visual.vertex_colors[:, :3] / 255.0, mesh.vertex_colors, atol=0.5 / 255 + 1e-6)
    plain = trimesh.load(io.BytesIO(ply_bytes(TriangleMesh(mesh.vertices, mesh.faces))), file_type="ply")
    assert len(plain.faces) == len(mesh.faces)


def test_unwrap_in_pieces_packs_one_atlas():
    mesh = bumpy_sphere(3)
    mesh.vertex_colors = np.clip(mesh.vertices + 0.5, 0, 1).astype(np.float32)
    out, uvs = unwrap_uv(mesh, pieces=4)
    assert len(out.faces) == len(mesh.faces)
    before = np.sort(mesh.vertices[mesh.faces].reshape(len(mesh.faces), -1), axis=0)
    after = np.sort(out.vertices[out.faces].reshape(len(out.faces), -1), axis=0)
    np.testing.assert_allclose(before, after, atol=1e-6)
    np.testing.assert_allclose(out.vertex_colors, np.clip(out.vertices + 0.5, 0, 1), atol=1e-6)
    # All pieces share the unit square without overlapping: rasterised coverage equals the UV area.
    r = rasterize_uv(torch.from_numpy(out.faces), torch.from_numpy(uvs), 256)
    area = _uv_areas(uvs[out.faces]).sum()
    assert 0.3 < area < 1.0
    assert abs(r.mask.float().mean().item() - area) < 0.05


def test_glb_normals_are_continuous_across_uv_seams():
    mesh, uvs = unwrap_uv(bumpy_sphere(2))
    data = glb_bytes(mesh, uvs, _checker(16))
    loaded = trimesh.load(io.BytesIO(data), file_type="glb", process=False)
    (geometry,) = loaded.geometry.values()
    normals = np.asarray(geometry.vertex_normals)
    positions = np.asarray(geometry.vertices)
    _, group = np.unique(positions, axis=0, return_inverse=True)
    group = group.reshape(-1)
    assert len(np.unique(group)) < len(positions)  # there are seams
    for g in np.unique(group)[:200]:
        copies = normals[group == g]
        np.testing.assert_allclose(copies, copies[0:1].repeat(len(copies), 0), atol=1e-5)
    # Outward: a sphere's normals point away from its centre.
    assert (np.einsum("ij,ij->i", normals, positions) > 0).all()


def test_unwrap_sources_give_the_seam_copies_one_normal():
    mesh = bumpy_sphere(3)
    out, uvs, sources = unwrap_uv(mesh, pieces=4, return_sources=True)
    np.testing.assert_array_equal(out.vertices, mesh.vertices[sources])
    assert len(np.unique(sources)) == len(mesh.vertices) < len(out.vertices)  # seams copy vertices
    by_source = smooth_normals(out.vertices, out.faces, sources)
    np.testing.assert_allclose(by_source, smooth_normals(out.vertices, out.faces), atol=1e-6)


def test_smooth_normals_are_unit_length_where_only_degenerate_faces_meet():
    from pipelines.export.gltf import smooth_normals

    vertices = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [2, 2, 2], [3, 3, 3], [4, 4, 4]], dtype=np.float32)
    faces = np.array([[0, 1, 2], [3, 4, 5]])  # the second face is a line: zero area
    normals = smooth_normals(vertices, faces)
    assert np.allclose(np.linalg.norm(normals, axis=1), 1.0)
    assert np.allclose(normals[:3], [0, 0, 1])
