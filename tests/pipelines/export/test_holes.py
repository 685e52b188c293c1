"""Inner-face removal and small-hole filling."""

from __future__ import annotations

import numpy as np
import trimesh
from scipy import sparse
from scipy.sparse.csgraph import breadth_first_order, maximum_flow

from tests.pipelines.export.meshes import bumpy_sphere
from pipelines.export.holes import (
    TERMINAL_CAPACITY,
    HoleFillConfig,
    _FaceGraph,
    _min_cut_source_side,
    boundary_loops,
    face_visibility,
    fill_small_holes,
    group_medians,
    group_quantiles,
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


def test_group_quantiles_and_medians_match_numpy():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 7, 500)
    labels = np.unique(labels, return_inverse=True)[1]
    values = (rng.integers(0, 97, 500) / 96).astype(np.float32)  # visibilities: k / num_views
    for q in (0.0, 0.6, 0.7, 1.0):
        expected = np.array([np.quantile(values[labels == label], q) for label in range(labels.max() + 1)])
        np.testing.assert_array_equal(group_quantiles(values, labels, q), expected)
    expected = np.array([np.median(values[labels == label]) for label in range(labels.max() + 1)])
    np.testing.assert_array_equal(group_medians(values, labels), expected)


def _full_graph_source_side(graph: _FaceGraph, inner: np.ndarray, outer: np.ndarray) -> np.ndarray:
    """The min cut on the whole face graph with explicit terminal edges (no reduction)."""
    n = len(inner)
    source, sink = n, n + 1
    pairs, cap = graph.face_pairs, graph.pair_capacity
    inner_ids, outer_ids = np.nonzero(inner)[0], np.nonzero(outer)[0]
    rows = np.concatenate([pairs[:, 0], pairs[:, 1], np.full(len(inner_ids), source), outer_ids])
    cols = np.concatenate([pairs[:, 1], pairs[:, 0], inner_ids, np.full(len(outer_ids), sink)])
    caps = np.concatenate([cap, cap, np.full(len(inner_ids) + len(outer_ids), TERMINAL_CAPACITY, np.int32)])
    capacity = sparse.csr_matrix((caps, (rows, cols)), shape=(n + 2, n + 2), dtype=np.int32)
    capacity.sum_duplicates()
    residual = (capacity - maximum_flow(capacity, source, sink).flow).tocsr()
    residual.data = (residual.data > 0).astype(np.int32)
    residual.eliminate_zeros()
    reached = breadth_first_order(residual, source, directed=True, return_predecessors=False)
    side = np.zeros(n + 2, dtype=bool)
    side[reached] = True
    return side[:n]


def test_min_cut_on_the_reduced_graph_matches_the_full_graph():
    mesh, num_outer = _with_inner_shell()
    graph = _FaceGraph.build(mesh)
    rng = np.random.default_rng(3)
    for trial in range(6):
        # Inner: the hidden shell and a few scattered faces; outer: scattered faces of the outer sphere.
        inner = np.zeros(len(mesh.faces), dtype=bool)
        inner[num_outer:] = True
        inner[rng.choice(num_outer, 20, replace=False)] = True
        outer = np.zeros(len(mesh.faces), dtype=bool)
        outer[rng.choice(num_outer, 150 * (trial + 1), replace=False)] = True
        outer &= ~inner
        side = _min_cut_source_side(graph, inner, outer)
        np.testing.assert_array_equal(side, _full_graph_source_side(graph, inner, outer))
        assert side[inner].all() and not side[outer].any()
