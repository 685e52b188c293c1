"""The mesh as a solid: rays along the front view's axis, inside tests, an occupancy grid.

Everything here works in the official frame (z up, the front camera looking
along +y), where the front view is an orthographic projection onto (x, z).  A
ray along +y through (x, z) crosses the closed surface an even number of
times; sorted, the crossings pair up into the intervals where the ray is
inside the body.  Three things are read off those rays:

* the cross-section of a limb at a landmark (its interval along y), which sets
  a joint's depth;
* whether a point is inside (an odd number of crossings in front of it);
* a voxel occupancy grid (rays through every column's centre), which skin
  weighting uses to tell whether a bone is visible from a vertex.

Rays are cast against triangles binned on a 2D grid over (x, z), so a query
only tests the few triangles of its cell.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
from scipy import ndimage

RAY_JITTER = (1.3e-7, 0.7e-7)
"""Offset of every ray in (x, z), so that no ray runs exactly through a shared edge or vertex."""


@dataclass
class RayHits:
    query: np.ndarray
    """(H,) int64 index of the ray each crossing belongs to, ascending."""
    y: np.ndarray
    """(H,) float64 depth of each crossing, ascending within a ray."""

    def of(self, ray: int) -> np.ndarray:
        start, stop = np.searchsorted(self.query, [ray, ray + 1])
        return self.y[start:stop]


class SolidMesh:
    """A closed triangle mesh (official frame) queried by rays along +y."""

    def __init__(self, vertices: np.ndarray, faces: np.ndarray, cells: int = 128) -> None:
        self.vertices = np.asarray(vertices, dtype=np.float64)  # (V, 3)
        self.faces = np.asarray(faces, dtype=np.int64)  # (F, 3)
        self.lower = self.vertices.min(axis=0)
        self.upper = self.vertices.max(axis=0)
        corners = self.vertices[self.faces][:, :, [0, 2]]  # (F, 3, 2) in (x, z)
        self._corners = corners
        extent = max(float((self.upper - self.lower)[[0, 2]].max()), 1e-9)
        self._cell = extent / cells
        self._origin = self.lower[[0, 2]]
        self._shape = np.ceil((self.upper - self.lower)[[0, 2]] / self._cell).astype(np.int64) + 1  # (2,)
        # Every triangle goes into each cell its (x, z) bounding box touches; the (face, cell)
        # pairs, sorted by cell, are a CSR table: cell c holds _cell_faces[_cell_start[c]:_cell_start[c + 1]].
        low = np.floor((corners.min(axis=1) - self._origin) / self._cell).astype(np.int64)  # (F, 2)
        high = np.floor((corners.max(axis=1) - self._origin) / self._cell).astype(np.int64)  # (F, 2)
        span = high - low + 1
        counts = span[:, 0] * span[:, 1]  # (F,) cells per triangle
        face = np.repeat(np.arange(len(self.faces)), counts)  # (P,)
        local = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)  # (P,) k-th cell of its face
        column = low[face, 0] + local % span[face, 0]
        row = low[face, 1] + local // span[face, 0]
        cell = column * self._shape[1] + row
        order = np.argsort(cell, kind="stable")
        self._cell_faces = face[order]
        self._cell_start = np.searchsorted(cell[order], np.arange(self._shape[0] * self._shape[1] + 1))

    # ------------------------------------------------------------------ rays
    def cast(self, xz: np.ndarray) -> RayHits:
        """Crossings of the rays along +y through the (Q, 2) points ``xz``."""
        xz = np.asarray(xz, dtype=np.float64).reshape(-1, 2) + np.array(RAY_JITTER)
        cell_xz = np.floor((xz - self._origin) / self._cell).astype(np.int64)  # (Q, 2)
        valid = ((cell_xz >= 0) & (cell_xz < self._shape)).all(axis=1)
        cell = np.where(valid, cell_xz[:, 0] * self._shape[1] + cell_xz[:, 1], 0)
        start = np.where(valid, self._cell_start[cell], 0)
        counts = np.where(valid, self._cell_start[cell + 1] - start, 0)
        query = np.repeat(np.arange(len(xz)), counts)
        local = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
        face = self._cell_faces[start[query] + local]
        a, b, c = (self._corners[face, i] for i in range(3))  # (P, 2) each
        p = xz[query]
        # Barycentric coordinates of p in the projected triangle (a, b, c).
        v0, v1, v2 = b - a, c - a, p - a
        det = v0[:, 0] * v1[:, 1] - v0[:, 1] * v1[:, 0]
        safe = np.where(np.abs(det) > 1e-18, det, 1.0)
        u = (v2[:, 0] * v1[:, 1] - v2[:, 1] * v1[:, 0]) / safe
        v = (v0[:, 0] * v2[:, 1] - v0[:, 1] * v2[:, 0]) / safe
        hit = (np.abs(det) > 1e-18) & (u >= 0) & (v >= 0) & (u + v <= 1)
        y_corners = self.vertices[self.faces[face[hit]], 1]  # (H, 3)
        u, v = u[hit], v[hit]
        y = y_corners[:, 0] * (1 - u - v) + y_corners[:, 1] * u + y_corners[:, 2] * v
        query = query[hit]
        order = np.lexsort((y, query))
        return RayHits(query=query[order], y=y[order])

    def intervals(self, xz: np.ndarray) -> list[np.ndarray]:
        """For each (x, z): the (K, 2) [entry, exit] depths where the ray is inside the solid."""
        hits = self.cast(xz)
        out = []
        for ray in range(len(np.asarray(xz).reshape(-1, 2))):
            y = hits.of(ray)
            y = y[: len(y) // 2 * 2]  # an odd count means a hole in the surface: drop the last crossing
            out.append(y.reshape(-1, 2))
        return out

    def contains(self, points: np.ndarray) -> np.ndarray:
        """(N,) bool: each (N, 3) point has an odd number of crossings in front of it."""
        points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
        hits = self.cast(points[:, [0, 2]])
        in_front = hits.y < points[hits.query, 1]
        crossings = np.bincount(hits.query[in_front], minlength=len(points))
        return crossings % 2 == 1

    # ------------------------------------------------------------------ grids
    def occupancy(self, resolution: int = 96) -> VoxelGrid:
        """Voxels of side max-extent / ``resolution`` whose centres are inside the solid."""
        size = float((self.upper - self.lower).max()) / resolution
        lower = self.lower - size  # one empty voxel of margin on every side
        shape = np.ceil((self.upper - lower) / size).astype(np.int64) + 2  # (3,) x, y, z
        x = lower[0] + (np.arange(shape[0]) + 0.5) * size
        z = lower[2] + (np.arange(shape[2]) + 0.5) * size
        gx, gz = np.meshgrid(x, z, indexing="ij")
        hits = self.cast(np.stack([gx.ravel(), gz.ravel()], axis=1))
        # Each crossing flips inside/outside for the voxels whose centres lie beyond it.
        first_beyond = np.clip(np.ceil((hits.y - lower[1]) / size - 0.5).astype(np.int64), 0, shape[1])
        flips = np.zeros((shape[0] * shape[2], shape[1] + 1), dtype=np.int32)
        np.add.at(flips, (hits.query, first_beyond), 1)
        inside = (np.cumsum(flips, axis=1)[:, : shape[1]] % 2 == 1).reshape(shape[0], shape[2], shape[1])
        return VoxelGrid(inside=inside.transpose(0, 2, 1), lower=lower, size=size)

    def half_width(self, xz: np.ndarray) -> np.ndarray:
        """(Q,) distance from each (x, z) to the outline of the front silhouette (0 outside).

        This is the half-width of the limb at that point, seen from the front.
        """
        distance, lower, size = self._front_distance
        index = np.floor((np.asarray(xz, dtype=np.float64).reshape(-1, 2) - lower) / size).astype(np.int64)
        index = np.clip(index, 0, np.array(distance.shape) - 1)
        return distance[index[:, 0], index[:, 1]]

    @cached_property
    def _front_distance(self) -> tuple[np.ndarray, np.ndarray, float]:
        """(X, Z) distance to the silhouette's outline on a grid of columns, its corner and cell size."""
        size = self._cell / 2
        lower = self._origin - size
        shape = np.ceil((self.upper - self.lower)[[0, 2]] / size).astype(np.int64) + 3
        x = lower[0] + (np.arange(shape[0]) + 0.5) * size
        z = lower[1] + (np.arange(shape[1]) + 0.5) * size
        gx, gz = np.meshgrid(x, z, indexing="ij")
        hits = self.cast(np.stack([gx.ravel(), gz.ravel()], axis=1))
        front = (np.bincount(hits.query, minlength=gx.size) > 0).reshape(shape)
        return ndimage.distance_transform_edt(front) * size, lower, size


@dataclass
class VoxelGrid:
    inside: np.ndarray
    """(X, Y, Z) bool: the voxel's centre is inside the solid."""
    lower: np.ndarray
    """(3,) corner of voxel (0, 0, 0)."""
    size: float
    """Side of a voxel."""

    def lookup(self, points: np.ndarray) -> np.ndarray:
        """(...,) bool occupancy at (..., 3) points (outside the grid: False)."""
        index = np.floor((points - self.lower) / self.size).astype(np.int64)
        valid = ((index >= 0) & (index < np.array(self.inside.shape))).all(axis=-1)
        index = np.where(valid[..., None], index, 0)
        return valid & self.inside[index[..., 0], index[..., 1], index[..., 2]]
