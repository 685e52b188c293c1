"""UV parametrisation of a triangle mesh with xatlas."""

from __future__ import annotations

import numpy as np
import xatlas
from scipy.cluster.vq import kmeans2
from scipy.spatial import cKDTree

from pipelines.geometry import TriangleMesh

FACES_PER_PIECE = 1250
"""Target piece size when a large mesh is cut before charting (see ``unwrap_uv``).

Charting an 80 k-face mesh took 6.1 CPU-seconds in 32 pieces and 4.1 in 64
(xatlas charts the pieces in parallel, and the cost grows faster than a
piece's size); smaller pieces than this fill the atlas worse (utilisation
0.75 -> 0.69 at 625 faces a piece).  On the 600 k-face simplification of a
2 M-face figure, pieces of 9.3 k faces (64) cost 285 CPU-microseconds a face
and gave 33 charts per 1000 faces; pieces of 1250 faces cost 50 and gave 12,
at the same utilisation."""
MAX_PIECES = 512


KMEANS_SAMPLE = 16384
"""Face centroids the piece centres are fitted to.  On a 600 k-face mesh, k-means on
every centroid took 6 CPU-seconds for 64 pieces; on this sample, from randomly
chosen starting centres, 0.06 s for 476 (k-means++ starts took 10 s)."""


def _pieces(mesh: TriangleMesh, count: int) -> np.ndarray:
    """(F,) piece label of each face: k-means on the face centroids (compact blobs).

    The centres are fitted to an evenly spaced sample of at most ``KMEANS_SAMPLE``
    centroids, then every face joins its nearest centre.
    """
    centroids = mesh.vertices[mesh.faces].mean(axis=1).astype(np.float64)  # (F, 3)
    sample = centroids[:: max(1, len(centroids) // KMEANS_SAMPLE)]
    centres, _ = kmeans2(sample, count, minit="points", seed=0, iter=5)
    return cKDTree(centres).query(centroids)[1]


def unwrap_uv(
    mesh: TriangleMesh, pieces: int | None = None, resolution: int | None = None, *, return_sources: bool = False
) -> tuple[TriangleMesh, np.ndarray] | tuple[TriangleMesh, np.ndarray, np.ndarray]:
    """Cut the mesh into charts and pack them into the unit square with xatlas.

    Vertices on chart seams are duplicated, so the returned mesh has its own
    vertex list (vertex colours follow their source vertex) and its faces are
    reordered.

    xatlas charts one mesh on one thread, and charting time grows faster than
    the face count; a large mesh is therefore first cut into ``pieces``
    compact parts (default: one per ~1250 faces, at most 512) that xatlas
    charts in parallel and packs into one atlas.  The cuts become chart seams.

    With ``resolution`` (the texture size the UVs are for), charts are packed
    for that texture with 2 texels of padding between them, so bilinear
    sampling never mixes two charts; without it xatlas picks the scale.

    Returns ``(mesh, uvs)`` with ``uvs`` of shape (V, 2), float32 in [0, 1],
    **v up**: v = 0 is the bottom row of the texture image and v = 1 its top
    row (the OpenGL / trimesh convention).  Texel row ``r`` of an ``H``-high
    image therefore covers v in [1 - (r + 1)/H, 1 - r/H].  ``gltf.glb_bytes``
    flips v when it writes glTF's top-left-origin TEXCOORD_0.  With
    ``return_sources``, a third array (V,) int64 gives the input vertex each
    returned vertex copies.
    """
    vertices = np.ascontiguousarray(mesh.vertices, dtype=np.float32)
    faces = np.asarray(mesh.faces, dtype=np.int64)
    if pieces is None:
        pieces = min(MAX_PIECES, max(1, len(faces) // FACES_PER_PIECE))
    labels = _pieces(mesh, pieces) if pieces > 1 else np.zeros(len(faces), dtype=np.int64)

    atlas = xatlas.Atlas()
    sources = []  # per piece: (P,) input vertex id of each piece vertex
    for piece in range(pieces):
        piece_faces = faces[labels == piece]
        if len(piece_faces) == 0:
            continue
        used, local = np.unique(piece_faces, return_inverse=True)
        sources.append(used)
        atlas.add_mesh(vertices[used], np.ascontiguousarray(local.reshape(-1, 3), dtype=np.uint32))
    pack = xatlas.PackOptions()
    if resolution is not None:
        pack.resolution = int(resolution)
        pack.padding = 2
        pack.blockAlign = True
    atlas.generate(xatlas.ChartOptions(), pack)

    vmaps, out_faces, out_uvs = [], [], []
    offset = 0
    for index, used in enumerate(sources):
        vmapping, indices, uvs = atlas.get_mesh(index)
        vmaps.append(used[np.asarray(vmapping, dtype=np.int64)])
        out_faces.append(np.asarray(indices, dtype=np.int64) + offset)
        out_uvs.append(np.asarray(uvs, dtype=np.float32))
        offset += len(vmapping)
    vmapping = np.concatenate(vmaps)
    colors = None
    if mesh.vertex_colors is not None:
        colors = np.asarray(mesh.vertex_colors, dtype=np.float32)[vmapping]
    out = TriangleMesh(vertices=vertices[vmapping], faces=np.concatenate(out_faces), vertex_colors=colors)
    uvs = np.clip(np.concatenate(out_uvs), 0.0, 1.0)
    return (out, uvs, vmapping) if return_sources else (out, uvs)
