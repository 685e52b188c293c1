"""Inner-face removal and small-hole filling."""

from __future__ import annotations

import numpy as np
import trimesh

from export.meshes import bumpy_sphere
from pipelines.export.holes import (
    HoleFillConfig,
    boundary_loops,
    face_visibility,
    fill_small_holes,
    remove_inner_faces,
)
from pipelines.geometry import TriangleMesh

SMALL = HoleFillConfig(num_views=48, resolution=96)


def _with_inner_shell() -> tuple[TriangleMesh, int]:
    outer = bumpy_sphere(3, radius=0.4)
    inner = bumpy_sphere(2, radius=0.2, seed=1)
    mesh = TriangleMesh(
        vertices=np.concatenate([outer.vertices, inner.vertices]),
        faces=np.concatenate([outer.faces, inner.faces + len(outer.vertices)]),
    )
    return mesh, len(outer.faces)


def _punch_hole(mesh: TriangleMesh, centre_vertex: int, radius: float) -> TriangleMesh:
    centres = mesh.vertices[mesh.faces].mean(axis=1)
    keep = np.linalg.norm(centres - mesh.vertices[centre_vertex], axis=1) > radius
    return TriangleMesh(mesh.vertices, mesh.faces[keep])


def test_visibility_separates_outer_and_hidden_faces():
    mesh, num_outer = _with_inner_shell()
    visibility = face_visibility(mesh, 48, 96)
    assert visibility[:num_outer].min() > 0.2
    assert visibility[num_outer:].max() == 0.0


def test_hidden_inner_shell_is_removed_and_outer_surface_kept():
    mesh, num_outer = _with_inner_shell()
    out = remove_inner_faces(mesh, SMALL)
    assert len(out.faces) == num_outer
    radius = np.linalg.norm(out.vertices, axis=1)
    assert radius.min() > 0.39
    assert trimesh.Trimesh(out.vertices, out.faces, process=False).is_watertight


def test_visible_surface_is_left_alone():
    mesh = bumpy_sphere(3)
    out = remove_inner_faces(mesh, SMALL)
    assert len(out.faces) == len(mesh.faces)
    np.testing.assert_array_equal(np.sort(out.faces, axis=None), np.sort(mesh.faces, axis=None))


def test_small_hole_is_filled_consistently():
    holed = _punch_hole(bumpy_sphere(3), 0, 0.08)
    (loop,) = boundary_loops(holed.faces)
    assert len(loop) >= 5
    filled = fill_small_holes(holed, max_edges=136)
    tm = trimesh.Trimesh(filled.vertices, filled.faces, process=False)
    assert tm.is_watertight and tm.is_winding_consistent
    assert tm.volume > 0  # outward orientation kept
    # The full pipeline fills it too.
    tm2 = trimesh.Trimesh(*_vf(remove_inner_faces(holed, SMALL)), process=False)
    assert tm2.is_watertight


def test_large_hole_stays_open():
    holed = _punch_hole(bumpy_sphere(3), 0, 0.3)
    (loop,) = boundary_loops(holed.faces)
    out = fill_small_holes(holed, max_edges=len(loop) - 1)
    assert len(out.faces) == len(holed.faces)
    assert len(boundary_loops(out.faces)) == 1


def _vf(mesh: TriangleMesh):
    return mesh.vertices, mesh.faces
