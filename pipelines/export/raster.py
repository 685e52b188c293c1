"""A triangle rasteriser in plain PyTorch (CPU or GPU).

Triangles are given in pixel coordinates: x grows to the right over the
columns, y grows downwards over the rows, and the centre of pixel (row r,
column c) is (c + 0.5, r + 0.5).  A pixel belongs to a triangle when its
centre lies inside it (edges included, so shared edges leave no cracks).

The rasteriser enumerates, for each triangle, the pixel centres of its
bounding box, keeps those inside, and resolves overlaps with one
``scatter_reduce`` over a packed (depth, face id) key: the nearest face wins,
ties go to the lower face id.  The work is chunked so that memory stays
bounded whatever the triangle sizes.  It is exact (no sampling tricks) and
fast enough on a GPU for the export's 1024 px buffers.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

_CHUNK_CANDIDATES = 1 << 23
"""Maximum (triangle, pixel) pairs tested at once: bounds peak memory (~0.5 GB)."""


@dataclass
class Rasterization:
    """Per-pixel result of a rasterisation of ``height`` x ``width`` pixels."""

    face_id: torch.Tensor
    """(H, W) int64: index of the visible face, -1 where no face covers the pixel."""
    bary: torch.Tensor
    """(H, W, 3) float32: barycentric weights of the face's three vertices (0 where empty)."""
    depth: torch.Tensor | None = None
    """(H, W) float32 interpolated depth (+inf where empty), when depths were given."""

    @property
    def mask(self) -> torch.Tensor:
        """(H, W) bool: pixels covered by a face."""
        return self.face_id >= 0

    def interpolate(self, attributes: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
        """Interpolate per-vertex ``attributes`` (V, C) -> (H, W, C), zero where empty."""
        fid = self.face_id.clamp(min=0)
        corner = attributes[faces[fid]]  # (H, W, 3, C)
        out = (corner * self.bary.unsqueeze(-1)).sum(dim=-2)  # (H, W, C)
        return out * self.mask.unsqueeze(-1).to(out.dtype)


def _edge(ax, ay, bx, by, px, py):
    """Twice the signed area of (a, b, p); positive when p is left of a->b in y-down pixels."""
    return (bx - ax) * (py - ay) - (by - ay) * (px - ax)


def rasterize(
    xy: torch.Tensor,
    faces: torch.Tensor,
    height: int,
    width: int,
    *,
    depth: torch.Tensor | None = None,
    w: torch.Tensor | None = None,
) -> Rasterization:
    """Rasterise triangles into a ``height`` x ``width`` pixel grid.

    Args:
        xy: (V, 2) float vertex positions in pixel units (see module docstring).
        faces: (F, 3) int vertex indices; both windings are accepted.
        depth: optional (V,) per-vertex depth (any monotone "distance"); when
            given, the nearest face wins each pixel and the interpolated depth
            is returned.  Without it, overlaps go to the lowest face id.
        w: optional (V,) clip-space w of each vertex for perspective views;
            barycentrics are then perspective-correct (depth is still
            interpolated linearly in screen space, as NDC depth is).
    """
    device = xy.device
    xy = xy.to(torch.float32)
    faces = faces.to(device=device, dtype=torch.int64)
    num_pixels = height * width
    best = torch.full((num_pixels,), torch.iinfo(torch.int64).max, dtype=torch.int64, device=device)

    tri = xy[faces]  # (F, 3, 2)
    lo = torch.ceil(tri.amin(dim=1) - 0.5).to(torch.int64)  # first pixel whose centre can be inside
    hi = torch.floor(tri.amax(dim=1) - 0.5).to(torch.int64)  # last one
    lo[:, 0].clamp_(min=0)
    lo[:, 1].clamp_(min=0)
    hi[:, 0].clamp_(max=width - 1)
    hi[:, 1].clamp_(max=height - 1)
    span = (hi - lo + 1).clamp(min=0)  # (F, 2) columns, rows
    count = span[:, 0] * span[:, 1]  # (F,)
    area = _edge(tri[:, 0, 0], tri[:, 0, 1], tri[:, 1, 0], tri[:, 1, 1], tri[:, 2, 0], tri[:, 2, 1])
    live = torch.nonzero((count > 0) & (area.abs() > 1e-12)).squeeze(1)

    face_depth = None
    if depth is not None:
        face_depth = depth.to(device=device, dtype=torch.float32)[faces]  # (F, 3)

    # Group triangles into chunks of bounded candidate count.
    live_counts = count[live]
    cumulative = torch.cumsum(live_counts, 0)
    chunk_id = torch.div(cumulative - live_counts, _CHUNK_CANDIDATES, rounding_mode="floor")
    boundaries = torch.nonzero(chunk_id[1:] != chunk_id[:-1]).squeeze(1) + 1
    starts = [0] + boundaries.tolist()
    ends = boundaries.tolist() + [len(live)]

    for start, end in zip(starts, ends):
        if start >= end:
            continue
        fids = live[start:end]
        n = count[fids]
        owner = torch.repeat_interleave(torch.arange(len(fids), device=device), n)  # (P,)
        offset = torch.arange(int(n.sum()), device=device) - torch.repeat_interleave(torch.cumsum(n, 0) - n, n)
        cols = span[fids, 0][owner]
        px_i = lo[fids, 0][owner] + offset % cols
        py_i = lo[fids, 1][owner] + torch.div(offset, cols, rounding_mode="floor")
        px = px_i.to(torch.float32) + 0.5
        py = py_i.to(torch.float32) + 0.5
        t = tri[fids][owner]  # (P, 3, 2)
        a = area[fids][owner]
        b0 = _edge(t[:, 1, 0], t[:, 1, 1], t[:, 2, 0], t[:, 2, 1], px, py) / a
        b1 = _edge(t[:, 2, 0], t[:, 2, 1], t[:, 0, 0], t[:, 0, 1], px, py) / a
        b2 = 1.0 - b0 - b1
        inside = (b0 >= -1e-6) & (b1 >= -1e-6) & (b2 >= -1e-6)
        pix = (py_i * width + px_i)[inside]
        fid = fids[owner[inside]]
        if face_depth is not None:
            bary = torch.stack([b0, b1, b2], dim=1)[inside]  # (P', 3)
            z = (face_depth[fid] * bary).sum(1)
            # Non-negative float32 bit patterns sort like the floats: pack (depth, face id).
            zkey = z.clamp(min=0).contiguous().view(torch.int32).to(torch.int64)
            key = (zkey << 32) | fid
        else:
            key = fid
        best.scatter_reduce_(0, pix, key, reduce="amin")

    empty = best == torch.iinfo(torch.int64).max
    face_id = torch.where(empty, torch.full_like(best, -1), best & 0xFFFFFFFF)  # (H*W,)
    face_id = face_id.view(height, width)
    return _barycentrics(xy, faces, face_id, depth, w, height, width)


def _barycentrics(xy, faces, face_id, depth, w, height, width) -> Rasterization:
    """Recompute barycentrics (and depth) at the winning face of every pixel."""
    device = xy.device
    mask = face_id >= 0
    rows, cols = torch.nonzero(mask, as_tuple=True)
    fid = face_id[rows, cols]
    t = xy[faces[fid]]  # (P, 3, 2)
    px = cols.to(torch.float32) + 0.5
    py = rows.to(torch.float32) + 0.5
    a = _edge(t[:, 0, 0], t[:, 0, 1], t[:, 1, 0], t[:, 1, 1], t[:, 2, 0], t[:, 2, 1])
    b0 = _edge(t[:, 1, 0], t[:, 1, 1], t[:, 2, 0], t[:, 2, 1], px, py) / a
    b1 = _edge(t[:, 2, 0], t[:, 2, 1], t[:, 0, 0], t[:, 0, 1], px, py) / a
    bary_screen = torch.stack([b0, b1, 1.0 - b0 - b1], dim=1).clamp(min=0.0)  # (P, 3)
    bary_screen = bary_screen / bary_screen.sum(1, keepdim=True)
    bary_out = bary_screen
    if w is not None:
        inv_w = 1.0 / w.to(device=device, dtype=torch.float32)[faces[fid]]  # (P, 3)
        weighted = bary_screen * inv_w
        bary_out = weighted / weighted.sum(1, keepdim=True)
    bary = torch.zeros(height, width, 3, dtype=torch.float32, device=device)
    bary[rows, cols] = bary_out
    out_depth = None
    if depth is not None:
        out_depth = torch.full((height, width), float("inf"), dtype=torch.float32, device=device)
        out_depth[rows, cols] = (depth.to(device=device, dtype=torch.float32)[faces[fid]] * bary_screen).sum(1)
    return Rasterization(face_id=face_id, bary=bary, depth=out_depth)


def rasterize_uv(faces: torch.Tensor, uvs: torch.Tensor, size: int | tuple[int, int]) -> Rasterization:
    """Rasterise a UV layout into a texture of ``size`` (``S`` or ``(H, W)``) texels.

    ``uvs`` are (V, 2) in [0, 1] with v up (``uv.unwrap_uv``): texel row 0 is
    v = 1.  The result gives, per texel, the face it lies on and barycentrics,
    from which the texel's 3D position is ``result.interpolate(vertices, faces)``.
    """
    height, width = (size, size) if isinstance(size, int) else size
    uvs = uvs.to(torch.float32)
    xy = torch.stack([uvs[:, 0] * width, (1.0 - uvs[:, 1]) * height], dim=1)  # (V, 2) pixels
    return rasterize(xy, faces, height, width)
