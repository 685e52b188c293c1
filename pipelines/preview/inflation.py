"""A closed body surface inflated from the person's silhouette.

The front view of the official frame is an orthographic projection along +y:
canvas pixel (row r, column c) of the 768 px stage-1 input sees the line
x = (c + 0.5)/768 - 0.5, z = 0.5 - (r + 0.5)/768.  The silhouette therefore
fixes x and z of the body; only the depth y is missing.  We guess it the way
a body is built, as a union of round limbs:

1. The signed distance ``d(x, z)`` to the silhouette's outline is computed at
   full resolution and averaged onto a ``grid_resolution`` grid over the unit
   square (cell = 1/R of the cube); its medial axis gives, at each medial
   point, the radius of the largest disc that fits there.
2. Every medial disc becomes a ball; the half-thickness ``h(x, z)`` of the body
   is the height of the union of those balls above the y = 0 plane.  Limbs
   become round tubes, the torso a thick slab with rounded sides, the head a
   sphere.  A real torso is flatter than it is wide, so ``h`` is scaled by
   ``depth_scale`` (and lightly smoothed).
3. The body is ``F(x, y, z) = min(d(x, z), h(x, z) - |y|) > 0``: the inflated
   volume clipped to the extrusion of the silhouette, so that its front
   projection is the outline to sub-pixel accuracy.  Marching cubes on ``F``
   gives a closed, manifold triangle mesh.  Its flat-ish regions are
   over-tessellated, so it is decimated by quadric edge collapse to
   ``max_faces`` (and kept closed and manifold by ``topology.py``).
4. The 64^3 occupancy of stage 1 is ``F > 0`` at the voxel centres.

The body is symmetric about y = 0 (front and back mirror each other); the
photo supplies the front's appearance, ``appearance.py`` the back's.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy import ndimage
from skimage.measure import marching_cubes
from skimage.morphology import medial_axis

from pipelines.base import GRID_RESOLUTION, PipelineInputError
from pipelines.export.simplify import simplify_mesh
from pipelines.geometry import TriangleMesh
from pipelines.preview.topology import repair_closed_manifold


@dataclass(frozen=True)
class InflationConfig:
    """How the silhouette is turned into a volume."""

    grid_resolution: int = 192
    """Cells across the unit cube for the thickness field and marching cubes."""
    depth_scale: float = 0.72
    """Front-to-back thickness relative to a round cross-section."""
    smoothing_sigma: float = 0.8
    """Gaussian blur (in cells) of the signed thickness field, against stair steps."""
    min_half_thickness: float = 1.0
    """Smallest half-thickness inside the silhouette, in cells (keeps thin parts closed)."""
    max_faces: int = 20000
    """Marching cubes over-tessellates a smooth body; it is decimated to this many faces."""


@dataclass
class BodyShape:
    """The inflated body as two fields over the front view.

    Grid cell (row i, column j) of the R x R grids is centred on
    x = (j + 0.5)/R - 0.5, z = 0.5 - (i + 0.5)/R.  The body is the set of
    points where ``F = min(signed_distance, half_thickness - |y|) > 0``: inside
    the extrusion of the silhouette and within the inflated thickness.
    """

    half_thickness: np.ndarray
    """(R, R) float32 half-thickness of the body along y, world units (> 0 everywhere)."""
    signed_distance: np.ndarray
    """(R, R) float32 distance to the silhouette outline, world units, > 0 inside."""

    @property
    def resolution(self) -> int:
        return self.half_thickness.shape[0]

    @property
    def mask(self) -> np.ndarray:
        """(R, R) bool: cell centres inside the silhouette."""
        return self.signed_distance > 0

    def sample(self, x: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Bilinear (half_thickness, signed_distance) at world points (x, z) of any shape."""
        res = self.resolution
        rows = (0.5 - np.asarray(z, dtype=np.float64)) * res - 0.5
        cols = (np.asarray(x, dtype=np.float64) + 0.5) * res - 0.5
        where = [rows.ravel(), cols.ravel()]
        out = []
        for field in (self.half_thickness, self.signed_distance):
            values = ndimage.map_coordinates(field, where, order=1, mode="nearest")
            out.append(values.reshape(np.shape(x)).astype(np.float32))
        return out[0], out[1]


def body_shape(alpha: np.ndarray, config: InflationConfig = InflationConfig()) -> BodyShape:
    """Inflate the silhouette ``alpha`` ((S, S) uint8 of the S px canvas, alpha > 0 is the person)."""
    res = config.grid_resolution
    size = alpha.shape[0]
    person = alpha > 0  # holes stay open: the gap between an arm on the hip and the body
    # Signed distance at full resolution (pixel centres; the outline lies half a pixel out),
    # averaged over each grid cell, in cells.
    inside = ndimage.distance_transform_edt(person) - 0.5
    outside = ndimage.distance_transform_edt(~person) - 0.5
    signed_px = np.where(person, inside, -outside).astype(np.float32)  # (S, S)
    signed = cv2.resize(signed_px, (res, res), interpolation=cv2.INTER_AREA) * (res / size)  # (R, R)
    mask = signed > 0
    if mask.sum() < 16:
        raise PipelineInputError("no_foreground", "the person is too small to be reconstructed")

    # 1. Medial axis: skeleton cells and their distance to the silhouette, in cells.
    skeleton, distance = medial_axis(mask, return_distance=True, rng=0)  # seeded tie-breaking
    rows, cols = np.nonzero(skeleton)
    radii = distance[rows, cols]

    # 2. Height of the union of the medial balls over y = 0 (largest balls first, so
    #    the max settles early and small balls rarely change anything).
    height_sq = np.zeros((res, res), dtype=np.float32)
    for idx in np.argsort(-radii):
        r, c, rad = rows[idx], cols[idx], float(radii[idx])
        k = int(np.ceil(rad))
        r0, r1, c0, c1 = max(r - k, 0), min(r + k + 1, res), max(c - k, 0), min(c + k + 1, res)
        dr = np.arange(r0, r1, dtype=np.float32)[:, None] - r  # (h, 1)
        dc = np.arange(c0, c1, dtype=np.float32)[None, :] - c  # (1, w)
        ball = rad * rad - dr * dr - dc * dc  # (h, w) squared height of this ball
        np.maximum(height_sq[r0:r1, c0:c1], ball, out=height_sq[r0:r1, c0:c1])
    height = np.sqrt(np.maximum(height_sq, 0.0)) * config.depth_scale

    # 3. Smooth the thickness (the outline itself comes from the signed distance).
    if config.smoothing_sigma > 0:
        height = ndimage.gaussian_filter(height, config.smoothing_sigma)
    height = np.maximum(height, config.min_half_thickness).astype(np.float32)
    return BodyShape(half_thickness=height / res, signed_distance=(signed / res).astype(np.float32))


def body_mesh(
    shape: BodyShape, max_faces: int = InflationConfig.max_faces
) -> tuple[TriangleMesh, np.ndarray]:
    """Closed surface ``F = min(d(x, z), h(x, z) - |y|) = 0`` by marching cubes.

    Returns the mesh (official frame, faces counter-clockwise from outside) and
    its (V, 3) float32 unit outward vertex normals.
    """
    res = shape.resolution
    rows, cols = np.nonzero(shape.mask)
    r0, r1 = max(rows.min() - 3, 0), min(rows.max() + 4, res)
    c0, c1 = max(cols.min() - 3, 0), min(cols.max() + 4, res)
    half = shape.half_thickness[r0:r1, c0:c1] * res  # (Rz, Rx) in cells, row = -z
    signed = shape.signed_distance[r0:r1, c0:c1] * res  # (Rz, Rx)
    depth_cells = int(np.ceil(half[signed > 0].max())) + 3
    # (Ry,) y in cells at half-integers: symmetric about y = 0, and never exactly on the
    # clamped half-thickness (an exact zero of F makes degenerate triangles).
    ys = np.arange(-depth_cells, depth_cells, dtype=np.float32) + 0.5
    # volume[ix, iy, iz]: x right, y back, z up (rows flipped so z grows with the index)
    half_xz, signed_xz = half[::-1, :].T, signed[::-1, :].T  # (Rx, Rz)
    volume = np.minimum(
        signed_xz[:, None, :], half_xz[:, None, :] - np.abs(ys)[None, :, None]
    )  # (Rx, Ry, Rz)
    # Grid values at (or within rounding of) zero put several triangle corners on one
    # grid point, which makes zero-area triangles: move them just outside the body.
    volume[np.abs(volume) < 1e-3] = -1e-3
    volume[[0, -1], :, :] = -1.0  # guarantee a closed surface
    volume[:, [0, -1], :] = -1.0
    volume[:, :, [0, -1]] = -1.0
    verts, faces, _, _ = marching_cubes(volume, level=0.0, gradient_direction="descent")
    # index space -> world: x = (c + i + 0.5)/R - 0.5, y = (i - depth + 0.5)/R, z = 0.5 - (row + 0.5)/R
    world = np.empty_like(verts, dtype=np.float32)
    world[:, 0] = (c0 + verts[:, 0] + 0.5) / res - 0.5
    world[:, 1] = (verts[:, 1] - depth_cells + 0.5) / res
    world[:, 2] = 0.5 - (r1 - 1 - verts[:, 2] + 0.5) / res
    faces = np.asarray(faces, dtype=np.int64)
    mesh = TriangleMesh(vertices=world, faces=faces)
    if _signed_volume(mesh) < 0:  # make the winding counter-clockwise seen from outside
        mesh.faces = faces[:, ::-1].copy()
    if len(mesh.faces) > max_faces:
        mesh = simplify_mesh(mesh, 1.0 - max_faces / len(mesh.faces))
    mesh = repair_closed_manifold(mesh)
    return mesh, vertex_normals(mesh.vertices, mesh.faces)


def occupancy_coords(shape: BodyShape, resolution: int = GRID_RESOLUTION) -> np.ndarray:
    """(N, 4) int32 rows [0, x, y, z] of the voxels whose centre lies inside the body."""
    centres = (np.arange(resolution, dtype=np.float32) + 0.5) / resolution - 0.5  # (G,)
    gx, gz = np.meshgrid(centres, centres, indexing="ij")  # (G, G) over (x, z)
    half, signed = shape.sample(gx, gz)  # (G, G) each
    inside = (half[:, None, :] > np.abs(centres)[None, :, None]) & (signed[:, None, :] > 0)  # (G, G, G)
    xyz = np.argwhere(inside)  # (N, 3) lexicographic in (x, y, z), as the official argwhere
    return np.concatenate([np.zeros((len(xyz), 1), dtype=np.int32), xyz.astype(np.int32)], axis=1)


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """(V, 3) float32 unit area-weighted vertex normals of a counter-clockwise mesh."""
    tri = vertices[faces]  # (F, 3, 3)
    face_n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])  # (F, 3), length = 2 * area
    out = np.zeros_like(vertices, dtype=np.float64)
    for corner in range(3):
        for axis in range(3):
            out[:, axis] += np.bincount(faces[:, corner], weights=face_n[:, axis], minlength=len(vertices))
    norm = np.linalg.norm(out, axis=1, keepdims=True)
    return (out / np.maximum(norm, 1e-12)).astype(np.float32)


def _signed_volume(mesh: TriangleMesh) -> float:
    tri = mesh.vertices[mesh.faces].astype(np.float64)  # (F, 3, 3)
    return float(np.einsum("ij,ij->i", tri[:, 0], np.cross(tri[:, 1], tri[:, 2])).sum() / 6.0)
