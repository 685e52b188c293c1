"""Removal of hidden inner faces and filling of small holes.

Decoded meshes often contain inner shells and pockets that no camera can see.
Following the official export, each face gets a *visibility*: the share of
many cameras around the subject that see at least one pixel of it.  Faces
seen often are "outer", faces almost never seen are "inner".  A minimum cut
on the face dual graph (capacities = shared edge lengths) separates the
inner region from the outer one along short seams; a connected part of the
inner side is removed only if it is itself poorly visible and the holes its
removal opens are small.  Small boundary loops (the opened holes and any
existing ones) are then closed by fans around their centroid.

The procedure runs up to three passes with the official parameter schedule,
each from the input mesh; see ``HoleFillConfig``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from scipy import sparse
from scipy.sparse.csgraph import breadth_first_order, connected_components, maximum_flow

from pipelines.export.cameras import sphere_cameras
from pipelines.export.clock import PhaseClock
from pipelines.export.raster import rasterize
from pipelines.geometry import TriangleMesh


@dataclass(frozen=True)
class PassParams:
    outer_ratio: float
    """r: quantile of the visibilities used for the outer threshold."""
    outer_min: float
    """m_o: outer faces are seen at least this often; removed parts are at most this visible (median)."""
    inner_max: float
    """m_i: faces seen at most this often are inner."""


@dataclass(frozen=True)
class HoleFillConfig:
    num_views: int = 1000
    resolution: int = 1024
    view_batch: int = 8
    """Views rasterised in one call (memory grows with it)."""
    schedule: tuple[PassParams, ...] = field(
        default_factory=lambda: (
            PassParams(0.7, 0.15, 0.01),
            PassParams(0.7, 0.15, 0.0),
            PassParams(0.6, 0.08, 0.01),
        )
    )
    max_hole_area: float = 0.04
    """Largest boundary loop a removal may open (loop area around its centroid)."""
    max_hole_edges: int = int(250 * 0.3**0.5)
    """Boundary loops with at most this many edges are filled."""
    stop_after_faces: int = 15000
    stop_after_vertex_share: float = 0.8
    """A pass that removed more than ``stop_after_faces`` faces, or more than this share of
    the input vertex count, ends the schedule."""


def face_visibility(
    mesh: TriangleMesh,
    num_views: int,
    resolution: int,
    *,
    view_batch: int = 8,
    device: str | torch.device = "cpu",
) -> np.ndarray:
    """(F,) float: share of ``num_views`` sphere cameras that see each face (depth-tested)."""
    device = torch.device(device)
    vertices = torch.as_tensor(mesh.vertices, dtype=torch.float32, device=device)
    faces = torch.as_tensor(mesh.faces, dtype=torch.int64, device=device)
    seen = torch.zeros(len(faces), dtype=torch.int64, device=device)
    cameras = sphere_cameras(num_views, resolution)
    for start in range(0, num_views, view_batch):
        batch = cameras[start : start + view_batch]
        projected = [cam.project(vertices) for cam in batch]
        xy = torch.stack([p[0] for p in projected])  # (B, V, 2)
        depth = torch.stack([p[1] for p in projected])  # (B, V)
        raster = rasterize(xy, faces, resolution, resolution, depth=depth, barycentrics=False)
        ids = raster.face_id.view(len(batch), -1)  # (B, H*W)
        view = torch.arange(len(batch), device=device).unsqueeze(1).expand_as(ids)
        hit = ids >= 0
        visible = torch.zeros(len(batch), len(faces), dtype=torch.bool, device=device)
        visible[view[hit], ids[hit]] = True  # (B, F): face seen in view
        seen += visible.sum(dim=0)
    return (seen.float() / num_views).cpu().numpy()


def _edge_keys(directed: np.ndarray) -> np.ndarray:
    """(N, 2) vertex pairs -> (N,) int64 key, equal for (a, b) and (b, a)."""
    low = np.minimum(directed[:, 0], directed[:, 1]).astype(np.int64)
    high = np.maximum(directed[:, 0], directed[:, 1]).astype(np.int64)
    return low * (int(directed.max(initial=0)) + 1) + high


TERMINAL_CAPACITY = 1000 * 100
"""Capacity of the edges from the source to inner faces and from outer faces to the sink."""


@dataclass
class _FaceGraph:
    """The dual graph of a mesh's faces, built once and shared by every pass."""

    directed: np.ndarray
    """(3F, 2) directed edges of every face: edge k of face f is row k * F + f."""
    owner: np.ndarray
    """(3F,) face of each directed edge."""
    edge_id: np.ndarray
    """(3F,) undirected edge of each directed edge (equal for the two faces sharing it)."""
    across: np.ndarray
    """(3F,) face across each directed edge, -1 on a boundary."""
    face_pairs: np.ndarray
    """(M, 2) pairs of faces sharing an edge."""
    pair_capacity: np.ndarray
    """(M,) int32 min-cut capacity of each pair: shared edge length x 1000 x 100, at least 1."""
    component: np.ndarray
    """(F,) connected component of each face."""

    @classmethod
    def build(cls, mesh: TriangleMesh) -> _FaceGraph:
        faces = mesh.faces
        num_faces = len(faces)
        directed = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])  # (3F, 2)
        owner = np.tile(np.arange(num_faces), 3)
        keys = _edge_keys(directed)
        order = np.argsort(keys, kind="stable")  # (3F,) directed edges grouped by undirected edge
        first = np.concatenate([[True], keys[order][1:] != keys[order][:-1]])
        edge_id = np.empty(len(directed), dtype=np.int64)
        edge_id[order] = np.cumsum(first) - 1
        # Consecutive entries with the same edge are faces sharing it (manifold: exactly two).
        same = ~first[1:]
        across = np.full(len(directed), -1, dtype=np.int64)
        across[order[:-1][same]] = owner[order[1:][same]]
        across[order[1:][same]] = owner[order[:-1][same]]
        pairs = np.stack([owner[order[:-1][same]], owner[order[1:][same]]], axis=1)  # (M, 2)
        shared = directed[order[:-1][same]]  # (M, 2) the shared edge of each pair
        length = np.linalg.norm(mesh.vertices[shared[:, 1]] - mesh.vertices[shared[:, 0]], axis=1)
        # Capacities follow the official export (shared edge length x 1000 between faces,
        # 1000 to the terminals), all scaled by 100 so that rounding them to the integers
        # scipy's max-flow needs keeps three significant digits.
        capacity = np.maximum(np.round(length * 1000.0 * 100), 1).astype(np.int32)
        return cls(
            directed=directed,
            owner=owner,
            edge_id=edge_id,
            across=across,
            face_pairs=pairs,
            pair_capacity=capacity,
            component=_components(num_faces, pairs),
        )


def _components(num_faces: int, pairs: np.ndarray, subset: np.ndarray | None = None) -> np.ndarray:
    """(F,) connected component label over the dual graph (restricted to ``subset`` if given)."""
    if subset is not None:
        keep = subset[pairs[:, 0]] & subset[pairs[:, 1]]
        pairs = pairs[keep]
    graph = sparse.coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(num_faces, num_faces))
    return connected_components(graph, directed=False)[1]


def _sorted_groups(values: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``values`` sorted by (label, value), with each label's (L,) start and count in that order."""
    order = np.lexsort((values, labels))
    counts = np.bincount(labels)
    starts = np.cumsum(counts) - counts
    return values[order], starts, counts


def group_quantiles(values: np.ndarray, labels: np.ndarray, q: float) -> np.ndarray:
    """(L,) ``np.quantile(values[labels == l], q)`` for every label l in 0..L-1 (each non-empty).

    One sort instead of one ``np.quantile`` call per label; the interpolation is
    numpy's default ('linear'), computed the way numpy computes it.
    """
    ordered, starts, counts = _sorted_groups(values, labels)
    position = q * (counts - 1)  # (L,) float64 virtual index
    below = np.floor(position).astype(np.int64)
    above = np.minimum(below + 1, counts - 1)
    gamma = position - below  # (L,) float64, applied in the values' dtype as numpy does
    a, b = ordered[starts + below], ordered[starts + above]
    diff = b - a
    low_side = a + diff * gamma.astype(values.dtype)
    high_side = b - diff * (1 - gamma).astype(values.dtype)
    return np.where(gamma >= 0.5, high_side, low_side)


def group_medians(values: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(L,) ``np.median(values[labels == l])`` for every label l in 0..L-1 (each non-empty)."""
    ordered, starts, counts = _sorted_groups(values, labels)
    low = ordered[starts + (counts - 1) // 2]
    high = ordered[starts + counts // 2]
    return np.where(counts % 2 == 1, low, (low + high) / 2).astype(values.dtype)


def _chain_loops(directed: np.ndarray) -> list[np.ndarray]:
    """Chain directed edges (N, 2) into closed loops (each edge a -> b is followed by one leaving b)."""
    following: dict[int, list[int]] = {}
    for a, b in directed.tolist():
        following.setdefault(a, []).append(b)
    loops = []
    while following:
        start = next(iter(following))
        loop = [start]
        current = start
        while True:
            nxt = following[current].pop()
            if not following[current]:
                del following[current]
            if nxt == start:
                loops.append(np.array(loop, dtype=np.int64))
                break
            if nxt not in following or len(loop) > len(directed):
                break  # open chain through a non-manifold vertex
            loop.append(nxt)
            current = nxt
    return loops


def boundary_loops(faces: np.ndarray) -> list[np.ndarray]:
    """Closed loops of boundary edges, each as an array of vertex ids in face order.

    A boundary edge a -> b (as it appears in its only face) is followed by the
    boundary edge leaving b.  Loops through non-manifold vertices may be split
    or dropped.
    """
    directed = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    _, inverse, counts = np.unique(_edge_keys(directed), return_inverse=True, return_counts=True)
    return _chain_loops(directed[counts[inverse.reshape(-1)] == 1])


def loop_areas(vertices: np.ndarray, loops: list[np.ndarray]) -> np.ndarray:
    """(L,) area of the fan from each loop's centroid: 1/2 sum |e_i x e_{i+1}|."""
    if not loops:
        return np.zeros(0)
    lengths = np.array([len(loop) for loop in loops])
    ids = np.concatenate(loops)  # (N,) vertex ids, loop after loop
    loop_of = np.repeat(np.arange(len(loops)), lengths)  # (N,)
    points = vertices[ids].astype(np.float64)  # (N, 3)
    centroid = np.stack([np.bincount(loop_of, points[:, k]) for k in range(3)], axis=1) / lengths[:, None]
    centred = points - centroid[loop_of]
    starts = np.cumsum(lengths) - lengths
    following = np.arange(len(ids)) + 1  # next point of the same loop, wrapping at its end
    following[starts + lengths - 1] = starts
    cross = np.linalg.norm(np.cross(centred, centred[following]), axis=1)
    return 0.5 * np.bincount(loop_of, cross, minlength=len(loops))


def fill_small_holes(mesh: TriangleMesh, max_edges: int) -> TriangleMesh:
    """Close every boundary loop of at most ``max_edges`` edges with a fan around its centroid."""
    return _fill_loops(mesh, boundary_loops(mesh.faces), max_edges)


def _fill_loops(mesh: TriangleMesh, loops: list[np.ndarray], max_edges: int) -> TriangleMesh:
    """Close each of the boundary ``loops`` (vertex ids in face order) of at most ``max_edges``
    edges: a triangle loop by one face, a longer one by a fan around its centroid."""
    vertices = [np.asarray(mesh.vertices, dtype=np.float32)]
    colors = None if mesh.vertex_colors is None else [np.asarray(mesh.vertex_colors, dtype=np.float32)]
    new_faces = [np.asarray(mesh.faces, dtype=np.int64)]
    next_vertex = len(mesh.vertices)
    for loop in loops:
        if len(loop) > max_edges or len(loop) < 3:
            continue
        if len(loop) == 3:
            # The loop runs a -> b -> c along the faces beside it: the patch runs the other way.
            new_faces.append(loop[::-1].reshape(1, 3))
            continue
        centre = mesh.vertices[loop].mean(axis=0, keepdims=True)
        vertices.append(centre.astype(np.float32))
        if colors is not None:
            colors.append(mesh.vertex_colors[loop].mean(axis=0, keepdims=True).astype(np.float32))
        nxt = np.roll(loop, -1)
        new_faces.append(np.stack([nxt, loop, np.full_like(loop, next_vertex)], axis=1))
        next_vertex += 1
    return TriangleMesh(
        vertices=np.concatenate(vertices),
        faces=np.concatenate(new_faces),
        vertex_colors=None if colors is None else np.concatenate(colors),
    )


def _remove_and_fill(mesh: TriangleMesh, graph: _FaceGraph, remove: np.ndarray, max_edges: int) -> TriangleMesh:
    """``fill_small_holes(mesh without the faces in remove)``, with the boundary taken from ``graph``.

    The boundary edges of what remains are its directed edges whose undirected
    edge now has a single face, in the order ``boundary_loops`` lists them, so
    the loops (and the result) are the same as the two steps apart.
    """
    kept = ~remove
    kept_edges = kept[graph.owner]  # (3F,)
    uses = np.bincount(graph.edge_id[kept_edges], minlength=int(graph.edge_id.max(initial=-1)) + 1)
    boundary = graph.directed[kept_edges & (uses[graph.edge_id] == 1)]
    loops = _chain_loops(boundary)
    if not remove.any():
        return _fill_loops(mesh, loops, max_edges)
    faces = mesh.faces[kept]
    used = np.zeros(len(mesh.vertices), dtype=bool)
    used[faces.ravel()] = True
    remap = np.cumsum(used) - 1  # new id of each used vertex
    remaining = TriangleMesh(
        vertices=mesh.vertices[used],
        faces=remap[faces],
        vertex_colors=None if mesh.vertex_colors is None else mesh.vertex_colors[used],
    )
    return _fill_loops(remaining, [remap[loop] for loop in loops], max_edges)


def _min_cut_source_side(graph: _FaceGraph, inner: np.ndarray, outer: np.ndarray) -> np.ndarray:
    """(F,) bool: faces on the source (inner) side of the minimum cut.

    The graph is the face dual graph with ``pair_capacity`` on both directions of
    every shared edge, an edge of ``TERMINAL_CAPACITY`` from the source to each
    inner face and one from each outer face to the sink.  The source side is what
    the source reaches in the residual graph of a maximum flow (the smallest
    minimum cut, the same for every maximum flow).

    The flow is computed on a much smaller, equivalent graph.  A face whose
    shared edges add up to less than the terminal capacity can never saturate
    its terminal edge, so every such inner face is reached from the source and
    no such outer face is: they are merged into the source and the sink.  The
    remaining ("free") faces split into connected parts; a part that touches
    only the source side is reached entirely without any flow, a part that does
    not touch it is not reached, and only the parts touching both terminals go
    through the max-flow solver (scipy, Dinic).
    """
    num_faces = len(inner)
    pairs, capacity = graph.face_pairs, graph.pair_capacity
    incident = np.bincount(pairs.ravel(), np.repeat(capacity, 2).astype(np.float64), minlength=num_faces)
    bounded = incident < TERMINAL_CAPACITY
    merged_in, merged_out = inner & bounded, outer & bounded
    free = ~(merged_in | merged_out)

    part = _components(num_faces, pairs, subset=free)  # (F,), meaningful on free faces
    num_parts = int(part.max(initial=-1)) + 1
    touches_source = np.zeros(num_parts, dtype=bool)
    touches_sink = np.zeros(num_parts, dtype=bool)
    touches_source[part[free & inner]] = True
    touches_sink[part[free & outer]] = True
    for a, b in (pairs.T, pairs.T[::-1]):
        border = free[a] & ~free[b]
        touches_source[part[a[border & merged_in[b]]]] = True
        touches_sink[part[a[border & merged_out[b]]]] = True

    side = merged_in.copy()
    side |= free & touches_source[part] & ~touches_sink[part]
    flowing = free & touches_source[part] & touches_sink[part]
    if not flowing.any():
        return side

    # Nodes 0..n-1: the flowing faces; n: source; n + 1: sink.
    ids = np.nonzero(flowing)[0]
    n = len(ids)
    source, sink = n, n + 1
    node = np.full(num_faces, -1, dtype=np.int64)
    node[ids] = np.arange(n)
    node[merged_in] = source
    node[merged_out] = sink
    a, b = node[pairs[:, 0]], node[pairs[:, 1]]
    keep = (a >= 0) & (b >= 0) & (a != b) & ~((a >= n) & (b >= n))  # each pair touches a flowing face
    rows = np.concatenate([a[keep], b[keep]])
    cols = np.concatenate([b[keep], a[keep]])
    caps = np.concatenate([capacity[keep], capacity[keep]])
    useful = (cols != source) & (rows != sink)  # no edge into the source or out of the sink
    rows, cols, caps = rows[useful], cols[useful], caps[useful]
    unbounded_in = node[free & inner & flowing]
    unbounded_out = node[free & outer & flowing]
    rows = np.concatenate([rows, np.full(len(unbounded_in), source), unbounded_out])
    cols = np.concatenate([cols, unbounded_in, np.full(len(unbounded_out), sink)])
    caps = np.concatenate([caps, np.full(len(unbounded_in) + len(unbounded_out), TERMINAL_CAPACITY, np.int32)])
    capacity_matrix = sparse.csr_matrix((caps.astype(np.int32), (rows, cols)), shape=(n + 2, n + 2), dtype=np.int32)
    capacity_matrix.sum_duplicates()
    flow = maximum_flow(capacity_matrix, source, sink).flow.tocsr()
    residual = (capacity_matrix - flow).tocsr()
    residual.data = np.where(residual.data > 0, 1, 0).astype(np.int32)
    residual.eliminate_zeros()
    reached = breadth_first_order(residual, source, directed=True, return_predecessors=False)
    side[ids[reached[reached < n]]] = True
    return side


def _one_pass(
    mesh: TriangleMesh, graph: _FaceGraph, visibility: np.ndarray, params: PassParams, config: HoleFillConfig
) -> TriangleMesh:
    num_faces = len(mesh.faces)

    # Outer threshold per connected component of the mesh (compared in the visibilities' dtype).
    global_q = np.quantile(visibility, params.outer_ratio)
    local_q = group_quantiles(visibility, graph.component, params.outer_ratio)  # (C,)
    threshold = np.minimum(np.maximum(np.minimum(local_q, global_q), params.outer_min), 0.5)
    outer = visibility > threshold.astype(visibility.dtype)[graph.component]
    inner = visibility <= params.inner_max
    if not inner.any() or not outer.any():
        return _remove_and_fill(mesh, graph, np.zeros(num_faces, dtype=bool), config.max_hole_edges)

    candidate = _min_cut_source_side(graph, inner, outer)
    labels = np.where(candidate, _components(num_faces, graph.face_pairs, subset=candidate), -1)  # (F,)
    in_part = labels >= 0
    parts, part_of_face = np.unique(labels[in_part], return_inverse=True)  # candidate parts, compact ids
    part = np.full(num_faces, -1, dtype=np.int64)
    part[in_part] = part_of_face
    num_parts = len(parts)
    if num_parts == 0:
        return _remove_and_fill(mesh, graph, np.zeros(num_faces, dtype=bool), config.max_hole_edges)
    # A part is removed only if it is itself poorly visible ...
    removable = group_medians(visibility[in_part], part_of_face) <= params.outer_min  # (P,)

    # ... and every hole its removal opens is small.  Opened edges run from a part to a face
    # outside it, the way the remaining face runs them (reversed).
    owner_part = part[graph.owner]
    across = graph.across
    opening = (owner_part >= 0) & (across >= 0) & (part[np.maximum(across, 0)] != owner_part)
    opening &= removable[np.maximum(owner_part, 0)]
    opening_part = owner_part[opening]
    opening_edges = graph.directed[opening][:, ::-1]
    edge_order = np.argsort(opening_part, kind="stable")
    edge_parts, edge_starts = np.unique(opening_part[edge_order], return_index=True)
    loops, loop_part = [], []
    for part_id, edges in zip(edge_parts.tolist(), np.split(opening_edges[edge_order], edge_starts[1:])):
        opened = _chain_loops(edges)
        loops += opened
        loop_part += [part_id] * len(opened)
    too_large = loop_areas(mesh.vertices, loops) > config.max_hole_area
    removable[np.asarray(loop_part, dtype=np.int64)[too_large]] = False

    remove = in_part & removable[np.maximum(part, 0)]
    return _remove_and_fill(mesh, graph, remove, config.max_hole_edges)


def remove_inner_faces(
    mesh: TriangleMesh,
    config: HoleFillConfig = HoleFillConfig(),
    *,
    device: str | torch.device = "cpu",
    timings: dict[str, float] | None = None,
    cpu_timings: dict[str, float] | None = None,
) -> TriangleMesh:
    """Run the pass schedule: remove hidden inner parts, then fill small holes.

    ``timings`` / ``cpu_timings``, if given, receive the wall / CPU seconds of
    ``holes.visibility`` (the renders) and ``holes.cut`` (the passes).
    """
    clock = PhaseClock(torch.device(device), timings, cpu_timings)
    visibility = face_visibility(mesh, config.num_views, config.resolution, view_batch=config.view_batch, device=device)
    clock.lap("holes.visibility")
    graph = _FaceGraph.build(mesh)
    result = mesh
    for params in config.schedule:
        result = _one_pass(mesh, graph, visibility, params, config)
        removed = len(mesh.faces) - len(result.faces)
        if removed > config.stop_after_faces or removed > config.stop_after_vertex_share * len(mesh.vertices):
            break
    clock.lap("holes.cut")
    return result
