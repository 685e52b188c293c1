"""Silhouette inflation on synthetic outlines whose right answer is known."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh

from pipelines.base import PipelineInputError
from pipelines.preview.appearance import find_head
from pipelines.preview.inflation import InflationConfig, body_mesh, body_shape, occupancy_coords

SIZE = 768


def _disc(radius_px: float, centre=(384.0, 384.0)) -> np.ndarray:
    rows, cols = np.mgrid[0:SIZE, 0:SIZE]
    inside = (rows + 0.5 - centre[0]) ** 2 + (cols + 0.5 - centre[1]) ** 2 <= radius_px**2
    return np.where(inside, 255, 0).astype(np.uint8)


def _trimesh(mesh) -> trimesh.Trimesh:
    return trimesh.Trimesh(mesh.vertices, mesh.faces, process=False)


def test_disc_inflates_to_a_flattened_ball():
    config = InflationConfig()
    radius = 0.3  # world units: 230.4 px
    shape = body_shape(_disc(radius * SIZE), config)
    mesh, normals = body_mesh(shape, config)
    tm = _trimesh(mesh)
    assert tm.is_watertight and tm.is_winding_consistent
    assert tm.volume > 0  # counter-clockwise seen from outside
    extent = mesh.vertices.max(0) - mesh.vertices.min(0)
    assert extent[0] == pytest.approx(2 * radius, abs=0.02)
    assert extent[2] == pytest.approx(2 * radius, abs=0.02)
    assert extent[1] == pytest.approx(2 * radius * config.depth_scale, abs=0.03)
    # An ellipsoid with semi-axes (r, r * depth_scale, r).
    expected_volume = 4 / 3 * np.pi * radius**3 * config.depth_scale
    assert tm.volume == pytest.approx(expected_volume, rel=0.06)
    # Normals are unit length and point outward.
    assert np.allclose(np.linalg.norm(normals, axis=1), 1.0, atol=1e-4)
    assert (np.einsum("ij,ij->i", normals, mesh.vertices) > 0).mean() > 0.99


def test_two_parts_give_one_closed_shell_the_larger():
    alpha = np.maximum(_disc(90, (200, 250)), _disc(60, (560, 500)))
    mesh, _ = body_mesh(body_shape(alpha))
    tm = _trimesh(mesh)
    assert tm.is_watertight
    assert len(tm.split(only_watertight=False)) == 1
    # The piece kept is the larger disc (centred at column 250, row 200: x = -0.17, z = 0.24).
    centre = mesh.vertices.mean(axis=0)
    assert centre[0] == pytest.approx(250 / SIZE - 0.5, abs=0.01)
    assert centre[2] == pytest.approx(0.5 - 200 / SIZE, abs=0.01)


def test_specks_are_dropped_and_thin_parts_kept():
    # A disc with a 2 px wide strap ending in a small blob, and loose specks around it.
    alpha = _disc(150)
    alpha[383:385, 534:700] = 255  # strap, thinner than a grid cell (4 px)
    alpha = np.maximum(alpha, _disc(20, (384, 710)))
    for row, col in ((100, 100), (700, 650), (50, 600)):
        alpha[row : row + 3, col : col + 3] = 255  # specks of 9 px
    mesh, _ = body_mesh(body_shape(alpha))
    tm = _trimesh(mesh)
    assert tm.is_watertight and len(tm.split(only_watertight=False)) == 1
    # The blob at the strap's end is part of the one piece; the specks are not.
    assert mesh.vertices[:, 0].max() >= 730 / SIZE - 0.5 - 0.005
    assert mesh.vertices[:, 2].max() <= 0.5 - 234 / SIZE + 0.005  # the disc's top, not a speck's


def test_occupancy_lies_inside_the_silhouette_extrusion():
    alpha = np.zeros((SIZE, SIZE), dtype=np.uint8)
    alpha[100:700, 300:460] = 255  # a standing slab, 600 x 160 px
    shape = body_shape(alpha)
    coords = occupancy_coords(shape)
    assert coords.dtype == np.int32 and coords.shape[1] == 4
    assert (coords[:, 0] == 0).all()
    x, y, z = coords[:, 1], coords[:, 2], coords[:, 3]
    # Voxel centres project into the slab (12 px per voxel at 768 px).
    cols = (x + 0.5) * 12
    rows = (63 - z + 0.5) * 12
    assert cols.min() >= 300 and cols.max() <= 460
    assert rows.min() >= 100 and rows.max() <= 700
    # Thickness follows the slab's half width (80 px = 6.7 voxels) times depth_scale.
    assert np.abs(y + 0.5 - 32).max() <= 80 / 12 * InflationConfig().depth_scale + 1
    # Every column of the silhouette is filled through its depth (no holes in the middle).
    assert set(np.unique(y)) == set(range(y.min(), y.max() + 1))


def test_empty_silhouette_is_refused():
    with pytest.raises(PipelineInputError) as info:
        body_shape(np.zeros((SIZE, SIZE), dtype=np.uint8))
    assert info.value.code == "no_foreground"


def test_head_is_found_above_the_neck():
    # A head (disc) on a neck on a torso: the head box ends at the neck.
    alpha = _disc(70, (80, 384))
    alpha[150:170, 360:408] = 255  # neck, 48 px wide
    alpha[170:768, 220:548] = 255  # torso
    head = find_head(alpha > 0)
    assert head.top == 10
    assert 145 <= head.bottom <= 172
    assert head.left == pytest.approx(384 - 0.6 * 140, abs=6)
    assert head.right == pytest.approx(384 + 0.6 * 140, abs=6)


def test_head_beside_raised_shoulders_keeps_its_own_columns():
    # A crouching pose: the shoulders rise to the head's height on both sides.
    alpha = _disc(60, (70, 384))
    alpha[60:768, 150:310] = 255  # left shoulder and arm, separated from the head
    alpha[60:768, 458:618] = 255
    alpha[140:768, 150:618] = 255  # the torso joins below the chin
    head = find_head(alpha > 0)
    assert head.left >= 300 and head.right <= 468
    assert 120 <= head.bottom <= 150
