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


@dataclass
class _Adjacency:
    edges: np.ndarray
    """(E, 2) unique undirected vertex edges."""
    face_pairs: np.ndarray
    """(M, 2) pairs of faces sharing an edge."""
    pair_edge: np.ndarray
    """(M,) index into ``edges`` of the shared edge."""


def _adjacency(faces: np.ndarray) -> _Adjacency:
    directed = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])  # (3F, 2)
    owner = np.tile(np.arange(len(faces)), 3)
    _, first, inverse = np.unique(_edge_keys(directed), return_index=True, return_inverse=True)
    edges = np.sort(directed[first], axis=1)
    inverse = inverse.reshape(-1)
    order = np.argsort(inverse, kind="stable")
    sorted_edges = inverse[order]
    sorted_faces = owner[order]
    # Consecutive entries with the same edge are faces sharing it (manifold: exactly two).
    same = sorted_edges[1:] == sorted_edges[:-1]
    pairs = np.stack([sorted_faces[:-1][same], sorted_faces[1:][same]], axis=1)
    return _Adjacency(edges=edges, face_pairs=pairs, pair_edge=sorted_edges[:-1][same])


def _components(num_faces: int, pairs: np.ndarray, subset: np.ndarray | None = None) -> np.ndarray:
    """(F,) connected component label over the dual graph (restricted to ``subset`` if given)."""
    if subset is not None:
        keep = subset[pairs[:, 0]] & subset[pairs[:, 1]]
        pairs = pairs[keep]
    graph = sparse.coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(num_faces, num_faces))
    return connected_components(graph, directed=False)[1]


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


def loop_area(vertices: np.ndarray, loop: np.ndarray) -> float:
    """Area of the fan from the loop's centroid: 1/2 sum |e_i x e_{i+1}|."""
    points = vertices[loop]
    centred = points - points.mean(axis=0)
    return float(0.5 * np.linalg.norm(np.cross(centred, np.roll(centred, -1, axis=0)), axis=1).sum())


def fill_small_holes(mesh: TriangleMesh, max_edges: int) -> TriangleMesh:
    """Close every boundary loop of at most ``max_edges`` edges with a fan around its centroid."""
    vertices = [np.asarray(mesh.vertices, dtype=np.float32)]
    colors = None if mesh.vertex_colors is None else [np.asarray(mesh.vertex_colors, dtype=np.float32)]
    new_faces = [np.asarray(mesh.faces, dtype=np.int64)]
    next_vertex = len(mesh.vertices)
    for loop in boundary_loops(mesh.faces):
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


def _remove_faces(mesh: TriangleMesh, keep: np.ndarray) -> TriangleMesh:
    faces = mesh.faces[keep]
    used = np.unique(faces)
    remap = np.full(len(mesh.vertices), -1, dtype=np.int64)
    remap[used] = np.arange(len(used))
    return TriangleMesh(
        vertices=mesh.vertices[used],
        faces=remap[faces],
        vertex_colors=None if mesh.vertex_colors is None else mesh.vertex_colors[used],
    )


def _min_cut_source_side(
    num_faces: int, adjacency: _Adjacency, edge_length: np.ndarray, inner: np.ndarray, outer: np.ndarray
) -> np.ndarray:
    """(F,) bool: faces on the source (inner) side of the minimum cut.

    Capacities follow the official export (shared edge length x 1000 between
    faces, 1000 to the terminals), all scaled by 100 so that rounding them to
    the integers scipy's max-flow needs keeps three significant digits.
    """
    source, sink = num_faces, num_faces + 1
    pairs = adjacency.face_pairs
    pair_cap = np.maximum(np.round(edge_length[adjacency.pair_edge] * 1000.0 * 100), 1).astype(np.int32)
    terminal_cap = 1000 * 100
    inner_ids = np.nonzero(inner)[0]
    outer_ids = np.nonzero(outer)[0]
    rows = np.concatenate([pairs[:, 0], pairs[:, 1], np.full(len(inner_ids), source), outer_ids])
    cols = np.concatenate([pairs[:, 1], pairs[:, 0], inner_ids, np.full(len(outer_ids), sink)])
    caps = np.concatenate([pair_cap, pair_cap, np.full(len(inner_ids) + len(outer_ids), terminal_cap, np.int32)])
    n = num_faces + 2
    capacity = sparse.csr_matrix((caps, (rows, cols)), shape=(n, n), dtype=np.int32)
    capacity.sum_duplicates()
    flow = maximum_flow(capacity, source, sink).flow.tocsr()
    residual = (capacity - flow).tocsr()
    residual.data = np.where(residual.data > 0, 1, 0).astype(np.int32)
    residual.eliminate_zeros()
    reached = breadth_first_order(residual, source, directed=True, return_predecessors=False)
    side = np.zeros(n, dtype=bool)
    side[reached] = True
    return side[:num_faces]


def _one_pass(mesh: TriangleMesh, visibility: np.ndarray, params: PassParams, config: HoleFillConfig) -> TriangleMesh:
    faces = mesh.faces
    num_faces = len(faces)
    adjacency = _adjacency(faces)
    edge_vectors = mesh.vertices[adjacency.edges[:, 1]] - mesh.vertices[adjacency.edges[:, 0]]
    edge_length = np.linalg.norm(edge_vectors, axis=1)

    # Outer threshold per connected component of the mesh.
    component = _components(num_faces, adjacency.face_pairs)
    global_q = np.quantile(visibility, params.outer_ratio)
    outer = np.zeros(num_faces, dtype=bool)
    for label in np.unique(component):
        members = component == label
        local_q = np.quantile(visibility[members], params.outer_ratio)
        threshold = min(max(min(local_q, global_q), params.outer_min), 0.5)
        outer |= members & (visibility > threshold)
    inner = visibility <= params.inner_max
    if not inner.any() or not outer.any():
        return fill_small_holes(mesh, config.max_hole_edges)

    candidate = _min_cut_source_side(num_faces, adjacency, edge_length, inner, outer)
    labels = np.where(candidate, _components(num_faces, adjacency.face_pairs, subset=candidate), -1)  # (F,)

    # Directed edges of every face and the face across each of them (-1 on a boundary).
    directed = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])  # (3F, 2)
    owner = np.tile(np.arange(num_faces), 3)
    _, edge_id = np.unique(_edge_keys(directed), return_inverse=True)
    order = np.argsort(edge_id.reshape(-1), kind="stable")
    same = edge_id.reshape(-1)[order][1:] == edge_id.reshape(-1)[order][:-1]
    across = np.full(len(directed), -1, dtype=np.int64)
    across[order[:-1][same]] = owner[order[1:][same]]
    across[order[1:][same]] = owner[order[:-1][same]]
    # Edges a removal would open: from a candidate part to a face outside that part,
    # run the way the remaining face runs them (reversed).
    part_of = labels[owner]
    opening = (part_of >= 0) & (across >= 0) & (labels[np.maximum(across, 0)] != part_of)
    opening_part = part_of[opening]
    opening_edges = directed[opening][:, ::-1]
    edge_order = np.argsort(opening_part, kind="stable")
    edge_parts, edge_starts = np.unique(opening_part[edge_order], return_index=True)
    edge_groups = dict(zip(edge_parts.tolist(), np.split(opening_edges[edge_order], edge_starts[1:])))

    face_order = np.argsort(labels, kind="stable")
    face_parts, face_starts = np.unique(labels[face_order], return_index=True)
    remove = np.zeros(num_faces, dtype=bool)
    for part, members in zip(face_parts.tolist(), np.split(face_order, face_starts[1:])):
        if part < 0 or np.median(visibility[members]) > params.outer_min:
            continue
        opened = _chain_loops(edge_groups.get(part, np.zeros((0, 2), dtype=np.int64)))
        if any(loop_area(mesh.vertices, loop) > config.max_hole_area for loop in opened):
            continue
        remove[members] = True
    return fill_small_holes(_remove_faces(mesh, ~remove), config.max_hole_edges)


def remove_inner_faces(
    mesh: TriangleMesh,
    config: HoleFillConfig = HoleFillConfig(),
    *,
    device: str | torch.device = "cpu",
) -> TriangleMesh:
    """Run the pass schedule: remove hidden inner parts, then fill small holes."""
    visibility = face_visibility(mesh, config.num_views, config.resolution, view_batch=config.view_batch, device=device)
    result = mesh
    for params in config.schedule:
        result = _one_pass(mesh, visibility, params, config)
        removed = len(mesh.faces) - len(result.faces)
        if removed > config.stop_after_faces or removed > config.stop_after_vertex_share * len(mesh.vertices):
            break
    return result
