"""Keeping a decimated body closed and manifold.

Quadric decimation of a thin part (a finger, the rim where front and back
meet) sometimes collapses two sheets of the surface onto each other: an edge
then borders four faces instead of two, and the mesh is no longer a valid
closed manifold even though it has no hole.  :func:`repair_closed_manifold`
undoes this in three moves:

0. a triangle of (near) zero area has no normal (the glTF validator rejects
   the zero normals it leads to): its shortest edge is collapsed;
1. a triangle present twice with opposite windings is a flattened fold of zero
   volume: both copies are removed;
2. at every vertex of an edge still shared by more than two faces, the
   incident faces are grouped into fans linked by ordinary two-face edges,
   and each fan after the first gets its own copy of the vertex.  Positions
   are unchanged (the sheets still touch), but every edge then borders exactly
   two faces.

:func:`largest_component` keeps the one piece a body must be (specks and
slivers beside it are dropped).
"""

from __future__ import annotations

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from pipelines.geometry import TriangleMesh


def edge_face_counts(faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unique undirected edges (E, 2) and how many faces border each (E,)."""
    edges = np.sort(faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2), axis=1)  # (3F, 2)
    stride = int(edges.max()) + 1 if len(edges) else 1
    keys, counts = np.unique(edges[:, 0] * stride + edges[:, 1], return_counts=True)  # one int per edge
    return np.stack([keys // stride, keys % stride], axis=1), counts


def is_closed_manifold(mesh: TriangleMesh) -> bool:
    """True when every edge borders exactly two faces."""
    _, counts = edge_face_counts(mesh.faces)
    return bool(len(counts)) and bool((counts == 2).all())


def repair_closed_manifold(mesh: TriangleMesh) -> TriangleMesh:
    """Collapse zero-area triangles, remove flattened folds, separate touching sheets,
    drop unused vertices."""
    faces = collapse_degenerate_faces(mesh.vertices, np.asarray(mesh.faces, dtype=np.int64))
    _, counts = edge_face_counts(faces)
    if not (counts == 2).all():
        faces = _without_folds(faces)
    mesh = split_pinched_edges(TriangleMesh(mesh.vertices, faces, mesh.vertex_colors))
    return _with_faces(mesh, mesh.faces)


def collapse_degenerate_faces(vertices: np.ndarray, faces: np.ndarray, rel_area: float = 1e-4) -> np.ndarray:
    """Collapse the shortest edge of every near-zero-area triangle (its normal is undefined).

    The edge's second vertex is replaced by its first everywhere; the two
    triangles that shared the edge disappear, the rest of the surface stays
    closed.  Repeated until no such triangle is left (a few passes at most).
    """
    vertices = np.asarray(vertices, dtype=np.float64)
    for _ in range(8):
        tri = vertices[faces]  # (F, 3, 3)
        area = np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
        degenerate = np.flatnonzero(area <= rel_area * max(float(np.median(area)), 1e-30))
        if degenerate.size == 0:
            break
        replace = np.arange(len(vertices))
        touched: set[int] = set()
        for face in degenerate.tolist():
            corners = faces[face].tolist()
            if touched.intersection(corners):
                continue  # one collapse per neighbourhood and pass
            ends = vertices[corners]  # (3, 3)
            lengths = np.linalg.norm(ends - np.roll(ends, -1, axis=0), axis=1)  # edge k runs k -> k + 1
            k = int(np.argmin(lengths))
            keep, drop = corners[k], corners[(k + 1) % 3]
            replace[drop] = keep
            touched.update(corners)
        faces = replace[faces]
        distinct = (faces[:, 0] != faces[:, 1]) & (faces[:, 1] != faces[:, 2]) & (faces[:, 0] != faces[:, 2])
        faces = faces[distinct]
    return faces


def _without_folds(faces: np.ndarray) -> np.ndarray:
    """Drop every triangle whose vertex set appears more than once (opposite-wound copies)."""
    keys = np.sort(faces, axis=1)  # (F, 3)
    _, inverse, counts = np.unique(keys, axis=0, return_inverse=True, return_counts=True)
    return faces[counts[inverse.ravel()] == 1]


def split_pinched_edges(mesh: TriangleMesh) -> TriangleMesh:
    """Give each sheet meeting at an over-shared edge its own vertices (see module docstring)."""
    faces = np.asarray(mesh.faces, dtype=np.int64)
    unique, counts = edge_face_counts(faces)
    bad_edges = unique[counts > 2]
    if len(bad_edges) == 0:
        return mesh
    manifold = {tuple(e) for e in unique[counts == 2].tolist()}
    vertices = [np.asarray(mesh.vertices)]
    colors = None if mesh.vertex_colors is None else [np.asarray(mesh.vertex_colors)]
    faces = faces.copy()
    next_index = len(mesh.vertices)
    for vertex in np.unique(bad_edges):
        incident = np.flatnonzero((faces == vertex).any(axis=1))
        fans = _fans_around(int(vertex), incident, faces, manifold)
        for fan in fans[1:]:
            rows = np.asarray(fan)
            faces[rows] = np.where(faces[rows] == vertex, next_index, faces[rows])
            vertices.append(np.asarray(mesh.vertices)[vertex : vertex + 1])
            if colors is not None:
                colors.append(np.asarray(mesh.vertex_colors)[vertex : vertex + 1])
            next_index += 1
    return TriangleMesh(
        vertices=np.concatenate(vertices).astype(np.float32),
        faces=faces,
        vertex_colors=None if colors is None else np.concatenate(colors).astype(np.float32),
    )


def _fans_around(vertex: int, incident: np.ndarray, faces: np.ndarray, manifold: set) -> list[list[int]]:
    """Group the faces around ``vertex`` into fans joined by two-face edges through it."""
    by_edge: dict[tuple[int, int], list[int]] = {}
    for face in incident.tolist():
        for other in faces[face].tolist():
            if other != vertex:
                key = (min(vertex, other), max(vertex, other))
                by_edge.setdefault(key, []).append(face)
    parent = {face: face for face in incident.tolist()}

    def root(face: int) -> int:
        while parent[face] != face:
            parent[face] = parent[parent[face]]
            face = parent[face]
        return face

    for key, linked in by_edge.items():
        if key in manifold and len(linked) == 2:
            parent[root(linked[0])] = root(linked[1])
    fans: dict[int, list[int]] = {}
    for face in incident.tolist():
        fans.setdefault(root(face), []).append(face)
    return sorted(fans.values(), key=lambda fan: min(fan))


def largest_component(mesh: TriangleMesh) -> TriangleMesh:
    """The connected piece of ``mesh`` with the most faces (pieces share no vertex)."""
    faces = np.asarray(mesh.faces, dtype=np.int64)
    count = len(mesh.vertices)
    edges = faces[:, [0, 1, 1, 2]].reshape(-1, 2)  # (2F, 2): two edges per face link all three
    graph = coo_matrix((np.ones(len(edges), dtype=np.int8), (edges[:, 0], edges[:, 1])), shape=(count, count))
    pieces, labels = connected_components(graph, directed=False)
    if pieces <= 1:
        return mesh
    face_label = labels[faces[:, 0]]  # (F,)
    return _with_faces(mesh, faces[face_label == np.argmax(np.bincount(face_label, minlength=pieces))])


def _with_faces(mesh: TriangleMesh, faces: np.ndarray) -> TriangleMesh:
    """``mesh`` reduced to ``faces`` (indices into its vertices) and the vertices they use."""
    used = np.unique(faces)  # (U,) sorted vertex ids still referenced
    remap = np.full(len(mesh.vertices), -1, dtype=np.int64)
    remap[used] = np.arange(len(used))
    return TriangleMesh(
        vertices=np.asarray(mesh.vertices)[used],
        faces=remap[faces],
        vertex_colors=None if mesh.vertex_colors is None else np.asarray(mesh.vertex_colors)[used],
    )
