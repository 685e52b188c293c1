"""A closed body surface inflated from the person's silhouette and pose.

The front view of the official frame is an orthographic projection along +y:
canvas pixel (row r, column c) of the 768 px stage-1 input sees the line
x = (c + 0.5)/768 - 0.5, z = 0.5 - (r + 0.5)/768.  The silhouette therefore
fixes x and z of the body; only the depth y is missing.  Every line of sight
through the silhouette crosses the body once, from a front surface
y = f(x, z) to a back surface y = b(x, z):

1. The silhouette is cleaned (specks apart from the person dropped, parts
   thinner than a grid cell widened to one cell so they survive), its signed
   distance ``d(x, z)`` to the outline is computed at full resolution and
   averaged onto a ``grid_resolution`` grid over the unit square.
2. The medial axis gives, at each medial point, the largest disc that fits
   there; the union of those discs as balls has height ``H(x, z)`` above the
   y = 0 plane: the half-thickness of a body of round parts.
3. Without a pose, the body is that union flattened by ``depth_scale`` (s),
   symmetric about y = 0: f = -s H, b = s H.  With a :class:`Skeleton`
   (``skeleton.py``) every part has its own depth and thickness: the torso is
   a slab of half-depth ``torso_half_depth`` about its tilted mid-plane,
   rounded at its sides by ``H`` and thinning out across its outline; each limb, the neck and the head is a round capsule
   whose centre runs in depth from joint to joint.  A line of sight through
   several parts (a forearm before the belly) spans all of them.  Lines of
   sight through no part (loose clothes, hair) follow their nearest part.
   Neighbouring lines of sight are made to overlap in depth, so the body is
   one piece even where a limb points at the camera.
4. The body is ``F(x, y, z) = min(d(x, z), y - f(x, z), b(x, z) - y) > 0``:
   clipped to the extrusion of the silhouette, so that its front projection
   is the outline to sub-pixel accuracy.  Marching cubes on ``F`` gives a
   closed, manifold triangle mesh; only its largest connected piece is kept.
   Its flat-ish regions are over-tessellated, so it is decimated by quadric
   edge collapse to ``max_faces`` (and kept closed and manifold by
   ``topology.py``), then Taubin-smoothed against the grid's terraces.
5. The 64^3 occupancy of stage 1 is ``F > 0`` at the voxel centres.

The photo supplies the front's appearance, ``appearance.py`` the back's.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import trimesh
from scipy import ndimage
from skimage.measure import marching_cubes
from skimage.morphology import medial_axis, skeletonize

from pipelines.base import GRID_RESOLUTION, PipelineInputError
from pipelines.export.simplify import simplify_mesh
from pipelines.geometry import TriangleMesh
from pipelines.preview.skeleton import Skeleton
from pipelines.preview.topology import largest_component, repair_closed_manifold


@dataclass(frozen=True)
class InflationConfig:
    """How the silhouette is turned into a volume."""

    grid_resolution: int = 192
    """Cells across the unit cube for the depth fields and marching cubes."""
    depth_scale: float = 0.72
    """Without a pose: front-to-back thickness relative to a round cross-section."""
    smoothing_sigma: float = 2.0
    """Gaussian blur (in cells) of the front and back depth fields, against stair steps."""
    min_half_thickness: float = 1.0
    """Smallest half-thickness inside the silhouette, in cells (keeps thin parts closed)."""
    min_overlap: float = 1.5
    """Depth overlap, in cells, that neighbouring lines of sight keep (the body stays one piece)."""
    min_speck_fraction: float = 0.002
    """Silhouette pieces apart from the person smaller than this fraction of it are dropped."""
    mesh_smoothing: int = 10
    """Taubin smoothing passes over the decimated mesh (volume-preserving, against terraces)."""
    max_faces: int = 40000
    """Marching cubes over-tessellates a smooth body; it is decimated to this many faces
    (the default ``simplify`` of stage 2 then keeps about 12k)."""


@dataclass
class BodyShape:
    """The body as three fields over the front view.

    Grid cell (row i, column j) of the R x R grids is centred on
    x = (j + 0.5)/R - 0.5, z = 0.5 - (i + 0.5)/R.  The body is the set of
    points where ``F = min(signed_distance, y - front, back - y) > 0``: inside
    the extrusion of the silhouette and between its front and back surfaces.
    """

    front: np.ndarray
    """(R, R) float32 depth y of the front surface (nearer the camera, smaller y), world units."""
    back: np.ndarray
    """(R, R) float32 depth y of the back surface, world units (> front everywhere)."""
    signed_distance: np.ndarray
    """(R, R) float32 distance to the silhouette outline, world units, > 0 inside."""

    @property
    def resolution(self) -> int:
        return self.front.shape[0]

    @property
    def mask(self) -> np.ndarray:
        """(R, R) bool: cell centres inside the silhouette."""
        return self.signed_distance > 0

    def sample(self, x: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Bilinear (front, back, signed_distance) at world points (x, z) of any shape."""
        res = self.resolution
        rows = (0.5 - np.asarray(z, dtype=np.float64)) * res - 0.5
        cols = (np.asarray(x, dtype=np.float64) + 0.5) * res - 0.5
        where = [rows.ravel(), cols.ravel()]
        out = []
        for field in (self.front, self.back, self.signed_distance):
            values = ndimage.map_coordinates(field, where, order=1, mode="nearest")
            out.append(values.reshape(np.shape(x)).astype(np.float32))
        return out[0], out[1], out[2]


def body_shape(
    alpha: np.ndarray, config: InflationConfig = InflationConfig(), skeleton: Skeleton | None = None
) -> BodyShape:
    """Inflate the silhouette ``alpha`` ((S, S) uint8 of the S px canvas, alpha > 0 is the person),
    posed by ``skeleton`` when one was found."""
    res = config.grid_resolution
    size = alpha.shape[0]
    person = clean_silhouette(alpha > 0, config.min_speck_fraction)
    # Holes stay open: the gap between an arm on the hip and the body.
    # Signed distance at full resolution (pixel centres; the outline lies half a pixel out),
    # averaged over each grid cell, in cells.
    inside = ndimage.distance_transform_edt(person) - 0.5
    outside = ndimage.distance_transform_edt(~person) - 0.5
    signed_px = np.where(person, inside, -outside).astype(np.float32)  # (S, S)
    signed = cv2.resize(signed_px, (res, res), interpolation=cv2.INTER_AREA) * (res / size)  # (R, R)
    # Parts thinner than a cell (fingers, a strap) average below zero: keep their centre line.
    thin = cv2.resize(skeletonize(person).astype(np.float32), (res, res), interpolation=cv2.INTER_AREA) > 0
    signed = np.where(thin & (signed <= 0.2), 0.2, signed).astype(np.float32)
    mask = signed > 0
    if mask.sum() < 16:
        raise PipelineInputError("no_foreground", "the person is too small to be reconstructed")

    height = _round_height(mask)  # (R, R) cells
    if skeleton is None:
        half = height * config.depth_scale
        front, back = -half, half
    else:
        front, back = _posed_surfaces(skeleton, mask, height, res)
    front = _smooth_inside(front, mask, config.smoothing_sigma)
    back = _smooth_inside(back, mask, config.smoothing_sigma)
    front, back = _joined(front, back, mask, config)
    front, back = _extended(front, mask), _extended(back, mask)
    return BodyShape(
        front=(front / res).astype(np.float32),
        back=(back / res).astype(np.float32),
        signed_distance=(signed / res).astype(np.float32),
    )


def clean_silhouette(person: np.ndarray, min_fraction: float) -> np.ndarray:
    """(S, S) bool silhouette without the specks apart from its largest piece (those smaller
    than ``min_fraction`` of it); pieces at least that large are kept."""
    labels, count = ndimage.label(person, structure=np.ones((3, 3)))
    if count <= 1:
        return person
    sizes = np.bincount(labels.ravel())[1:]  # (count,)
    keep = np.flatnonzero(sizes >= min_fraction * sizes.max()) + 1
    return np.isin(labels, keep)


def _round_height(mask: np.ndarray) -> np.ndarray:
    """(R, R) float32 height, in cells, of the union of the balls on the medial axis of ``mask``."""
    res = mask.shape[0]
    skeleton, distance = medial_axis(mask, return_distance=True, rng=0)  # seeded tie-breaking
    rows, cols = np.nonzero(skeleton)
    radii = distance[rows, cols]
    # Largest balls first, so the max settles early and small balls rarely change anything.
    height_sq = np.zeros((res, res), dtype=np.float32)
    for idx in np.argsort(-radii, kind="stable"):
        r, c, rad = rows[idx], cols[idx], float(radii[idx])
        k = int(np.ceil(rad))
        r0, r1, c0, c1 = max(r - k, 0), min(r + k + 1, res), max(c - k, 0), min(c + k + 1, res)
        dr = np.arange(r0, r1, dtype=np.float32)[:, None] - r  # (h, 1)
        dc = np.arange(c0, c1, dtype=np.float32)[None, :] - c  # (1, w)
        ball = rad * rad - dr * dr - dc * dc  # (h, w) squared height of this ball
        np.maximum(height_sq[r0:r1, c0:c1], ball, out=height_sq[r0:r1, c0:c1])
    return np.sqrt(np.maximum(height_sq, 0.0))


def _posed_surfaces(
    skeleton: Skeleton, mask: np.ndarray, height: np.ndarray, res: int
) -> tuple[np.ndarray, np.ndarray]:
    """(R, R) front and back depth, in cells, of the torso slab and the limbs' capsules."""
    centres = (np.arange(res, dtype=np.float32) + 0.5) / res - 0.5  # (R,)
    gx = np.broadcast_to(centres[None, :], (res, res))  # (R, R) world x of each cell
    gz = np.broadcast_to(-centres[:, None], (res, res))  # (R, R) world z
    signed, depth, half = [], [], []  # per part, (R, R) each, in cells
    caps = []  # per limb, its largest half-thickness in cells

    # Torso: signed distance to its quadrilateral, the tilted mid-plane, a flat slab whose
    # thickness fades out across the quadrilateral's edge (into arms, neck, loose clothes).
    corners = np.stack([(skeleton.torso[:, 0] + 0.5) * res - 0.5, (0.5 - skeleton.torso[:, 1]) * res - 0.5], -1)
    polygon = [np.round(corners * 16).astype(np.int32)]  # 4 bits of sub-pixel precision
    inside = cv2.fillPoly(np.zeros((res, res), np.uint8), polygon, 1, shift=4) > 0
    torso_signed = ndimage.distance_transform_edt(~inside) - ndimage.distance_transform_edt(inside)
    torso_half = skeleton.torso_half_depth * res
    fade = np.clip(0.5 - torso_signed / torso_half, 0.0, 1.0)  # 1 inside, 0 half a depth beyond
    signed.append(torso_signed - 0.5 * torso_half)
    depth.append(skeleton.torso_depth_at(gx, gz) * res)
    half.append(np.minimum(height, torso_half * fade * fade * (3 - 2 * fade)))

    # Limbs, neck, head: round capsules around segments whose depth runs joint to joint.
    points = np.stack([gx, gz], axis=-1)  # (R, R, 2)
    for capsule in skeleton.limbs:
        a, b = capsule.start[[0, 2]], capsule.end[[0, 2]]
        ab = b - a
        t = np.clip(((points - a) @ ab) / max(float(ab @ ab), 1e-12), 0.0, 1.0)  # (R, R)
        dist = np.linalg.norm(points - (a + t[..., None] * ab), axis=-1) * res  # (R, R) cells
        radius = capsule.radius * res
        signed.append(dist - radius)
        depth.append(((1 - t) * capsule.start[1] + t * capsule.end[1]) * res)
        round_profile = np.sqrt(np.maximum(radius**2 - dist**2, (0.3 * radius) ** 2))
        half.append(np.minimum(height, round_profile))
        caps.append(radius)

    signed_a, depth_a, half_a = np.stack(signed), np.stack(depth), np.stack(half)  # (P, R, R)
    covered = signed_a <= 0
    front = np.where(covered, depth_a - half_a, np.inf).min(axis=0)
    back = np.where(covered, depth_a + half_a, -np.inf).max(axis=0)
    # Lines of sight through no part follow the nearest one in depth; near a limb (hair beyond
    # the skull, a loose sleeve) round as the outline there up to the limb's radius, near the
    # torso as thin as the torso's edge.
    nearest = signed_a.argmin(axis=0)  # (R, R), 0 is the torso
    near_depth = np.take_along_axis(depth_a, nearest[None], 0)[0]
    limb_half = np.minimum(height, np.asarray([0.0, *caps], dtype=np.float32)[nearest])
    near_half = np.where(nearest == 0, half_a[0], limb_half)
    none = ~covered.any(axis=0)
    front = np.where(none, near_depth - near_half, front)
    back = np.where(none, near_depth + near_half, back)
    # Centre the body in depth (it must fit in the unit cube).
    shift = (front[mask].min() + back[mask].max()) / 2
    limit = res / 2 - 3
    return np.clip(front - shift, -limit, limit), np.clip(back - shift, -limit, limit)


def _smooth_inside(field: np.ndarray, mask: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of ``field`` over the cells of ``mask`` only (normalised convolution)."""
    if sigma <= 0:
        return field
    weight = mask.astype(np.float32)
    blurred = ndimage.gaussian_filter(np.where(mask, field, 0.0).astype(np.float32), sigma)
    norm = ndimage.gaussian_filter(weight, sigma)
    return np.where(mask, blurred / np.maximum(norm, 1e-6), field).astype(np.float32)


def _extended(field: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``field`` with every cell outside ``mask`` set to its nearest inside cell's value, so that
    the outline, where marching cubes interpolates across it, follows the signed distance alone."""
    _, (rows, cols) = ndimage.distance_transform_edt(~mask, return_indices=True)
    return field[rows, cols]


def _joined(front: np.ndarray, back: np.ndarray, mask: np.ndarray, config: InflationConfig):
    """Front and back with a minimum thickness, and overlapping their neighbours' by
    ``min_overlap`` cells: a back surface reaches past every neighbour's front and (so) every
    front stays before every neighbour's back, and the body cannot fall apart in depth."""
    centre = (front + back) / 2
    half = np.maximum((back - front) / 2, config.min_half_thickness)
    front, back = centre - half, centre + half
    deepest_front = ndimage.maximum_filter(np.where(mask, front, -np.inf), size=3)
    back = np.where(mask, np.maximum(back, deepest_front + config.min_overlap), back)
    return front.astype(np.float32), back.astype(np.float32)


def body_mesh(shape: BodyShape, config: InflationConfig = InflationConfig()) -> tuple[TriangleMesh, np.ndarray]:
    """Closed surface ``F = min(d(x, z), y - f(x, z), b(x, z) - y) = 0`` by marching cubes,
    its largest connected piece, decimated to ``config.max_faces`` and Taubin-smoothed.

    Returns the mesh (official frame, faces counter-clockwise from outside) and
    its (V, 3) float32 unit outward vertex normals.
    """
    res = shape.resolution
    rows, cols = np.nonzero(shape.mask)
    r0, r1 = max(rows.min() - 3, 0), min(rows.max() + 4, res)
    c0, c1 = max(cols.min() - 3, 0), min(cols.max() + 4, res)
    front = shape.front[r0:r1, c0:c1] * res  # (Rz, Rx) in cells, row = -z
    back = shape.back[r0:r1, c0:c1] * res
    signed = shape.signed_distance[r0:r1, c0:c1] * res  # (Rz, Rx)
    inside = signed > 0
    y0 = int(np.floor(front[inside].min())) - 3
    y1 = int(np.ceil(back[inside].max())) + 3
    # (Ry,) y in cells at half-integers, never exactly on a clamped surface (an exact zero
    # of F makes degenerate triangles).
    ys = np.arange(y0, y1, dtype=np.float32) + 0.5
    # volume[ix, iy, iz]: x right, y back, z up (rows flipped so z grows with the index)
    front_xz, back_xz, signed_xz = front[::-1, :].T, back[::-1, :].T, signed[::-1, :].T  # (Rx, Rz)
    volume = np.minimum(
        signed_xz[:, None, :],
        np.minimum(ys[None, :, None] - front_xz[:, None, :], back_xz[:, None, :] - ys[None, :, None]),
    )  # (Rx, Ry, Rz)
    # Grid values at (or within rounding of) zero put several triangle corners on one
    # grid point, which makes zero-area triangles: move them just outside the body.
    volume[np.abs(volume) < 1e-3] = -1e-3
    volume[[0, -1], :, :] = -1.0  # guarantee a closed surface
    volume[:, [0, -1], :] = -1.0
    volume[:, :, [0, -1]] = -1.0
    verts, faces, _, _ = marching_cubes(volume, level=0.0, gradient_direction="descent")
    # index space -> world: x = (c0 + i + 0.5)/R - 0.5, y = (y0 + i + 0.5)/R, z = 0.5 - (row + 0.5)/R
    world = np.empty_like(verts, dtype=np.float32)
    world[:, 0] = (c0 + verts[:, 0] + 0.5) / res - 0.5
    world[:, 1] = (y0 + verts[:, 1] + 0.5) / res
    world[:, 2] = 0.5 - (r1 - 1 - verts[:, 2] + 0.5) / res
    faces = np.asarray(faces, dtype=np.int64)
    mesh = largest_component(TriangleMesh(vertices=world, faces=faces))
    if _signed_volume(mesh) < 0:  # make the winding counter-clockwise seen from outside
        mesh.faces = mesh.faces[:, ::-1].copy()
    if len(mesh.faces) > config.max_faces:
        mesh = simplify_mesh(mesh, 1.0 - config.max_faces / len(mesh.faces))
    mesh = largest_component(repair_closed_manifold(mesh))
    if config.mesh_smoothing > 0:  # the grid's terraces on steep surfaces (limbs in depth)
        smooth = trimesh.Trimesh(mesh.vertices, mesh.faces, process=False)
        trimesh.smoothing.filter_taubin(smooth, iterations=config.mesh_smoothing)
        mesh.vertices = np.asarray(smooth.vertices, dtype=np.float32)
    return mesh, vertex_normals(mesh.vertices, mesh.faces)


def occupancy_coords(shape: BodyShape, resolution: int = GRID_RESOLUTION) -> np.ndarray:
    """(N, 4) int32 rows [0, x, y, z] of the voxels whose centre lies inside the body."""
    centres = (np.arange(resolution, dtype=np.float32) + 0.5) / resolution - 0.5  # (G,)
    gx, gz = np.meshgrid(centres, centres, indexing="ij")  # (G, G) over (x, z)
    front, back, signed = shape.sample(gx, gz)  # (G, G) each
    y = centres[None, :, None]
    inside = (front[:, None, :] < y) & (y < back[:, None, :]) & (signed[:, None, :] > 0)  # (G, G, G)
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
