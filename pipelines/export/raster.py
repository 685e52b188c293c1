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
"""Maximum (triangle, pixel) pairs tested at once: bounds peak memory (about 1 GB)."""


@dataclass
class Rasterization:
    """Per-pixel result of a rasterisation of ``height`` x ``width`` pixels.

    Shapes below are for one view; a batched call adds a leading view dimension B.
    """

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
    """Twice the signed area of the triangle (a, b, p) (sign depends on the winding)."""
    return (bx - ax) * (py - ay) - (by - ay) * (px - ax)


def rasterize(
    xy: torch.Tensor,
    faces: torch.Tensor,
    height: int,
    width: int,
    *,
    depth: torch.Tensor | None = None,
    w: torch.Tensor | None = None,
    barycentrics: bool = True,
) -> Rasterization:
    """Rasterise triangles into a ``height`` x ``width`` pixel grid.

    Args:
        xy: (V, 2) float vertex positions in pixel units (see module docstring),
            or (B, V, 2) to rasterise the same faces in B views at once (all
            outputs then get a leading B dimension).
        faces: (F, 3) int vertex indices; both windings are accepted.
        depth: optional (V,) (or (B, V)) per-vertex depth, non-negative and
            growing away from the camera; when given, the nearest face wins
            each pixel and the interpolated depth is returned.  Without it,
            overlaps go to the lowest face id.
        w: optional (V,) (or (B, V)) clip-space w of each vertex for
            perspective views; barycentrics are then perspective-correct (depth
            is still interpolated linearly in screen space, as NDC depth is).
        barycentrics: set False when only face ids are needed (``bary`` is
            then empty and ``depth`` None).
    """
    batched = xy.dim() == 3
    if not batched:
        xy = xy.unsqueeze(0)
        depth = None if depth is None else depth.unsqueeze(0)
        w = None if w is None else w.unsqueeze(0)
    views, num_vertices = xy.shape[:2]
    device = xy.device
    faces = faces.to(device=device, dtype=torch.int64)
    num_faces = len(faces)
    # Flatten the views: face k of view b becomes face b * F + k over vertices b * V + i.
    offsets = (torch.arange(views, device=device) * num_vertices).view(-1, 1, 1)
    all_faces = (faces.unsqueeze(0) + offsets).reshape(-1, 3)  # (B*F, 3)
    all_xy = xy.reshape(-1, 2).to(torch.float32)  # (B*V, 2)
    all_depth = None if depth is None else depth.reshape(-1).to(torch.float32)
    all_w = None if w is None else w.reshape(-1).to(torch.float32)
    face_view = torch.arange(views, device=device).repeat_interleave(num_faces)  # (B*F,)

    best = _resolve(all_xy, all_faces, face_view, all_depth, views, height, width)
    empty = best == torch.iinfo(torch.int64).max
    global_id = torch.where(empty, torch.full_like(best, -1), best & 0xFFFFFFFF).view(views, height, width)
    if barycentrics:
        result = _barycentrics(all_xy, all_faces, global_id, all_depth, all_w)
    else:
        result = Rasterization(face_id=global_id, bary=torch.empty(0, device=device))
    result.face_id = torch.where(global_id >= 0, global_id % max(num_faces, 1), global_id)
    if not batched:
        result.face_id = result.face_id[0]
        if barycentrics:
            result.bary = result.bary[0]
            result.depth = None if result.depth is None else result.depth[0]
    return result


def _resolve(xy, faces, face_view, depth, views, height, width) -> torch.Tensor:
    """(B*H*W,) int64 packed key of the winning face per pixel (int64 max where empty)."""
    device = xy.device
    best = torch.full((views * height * width,), torch.iinfo(torch.int64).max, dtype=torch.int64, device=device)
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
        face_depth = depth[faces]  # (F, 3)

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
        fid = fids[owner[inside]]
        pix = (face_view[fid] * height + py_i[inside]) * width + px_i[inside]
        if face_depth is not None:
            bary = torch.stack([b0, b1, b2], dim=1)[inside]  # (P', 3)
            z = (face_depth[fid] * bary).sum(1)
            # Non-negative float32 bit patterns sort like the floats: pack (depth, face id).
            zkey = z.clamp(min=0).contiguous().view(torch.int32).to(torch.int64)
            key = (zkey << 32) | fid
        else:
            key = fid
        best.scatter_reduce_(0, pix, key, reduce="amin")
    return best


def _barycentrics(xy, faces, face_id, depth, w) -> Rasterization:
    """Barycentrics (and depth) at the winning face of every pixel; ``face_id`` is (B, H, W)."""
    device = xy.device
    views, height, width = face_id.shape
    mask = face_id >= 0
    view, rows, cols = torch.nonzero(mask, as_tuple=True)
    fid = face_id[view, rows, cols]
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
        inv_w = 1.0 / w[faces[fid]]  # (P, 3)
        weighted = bary_screen * inv_w
        bary_out = weighted / weighted.sum(1, keepdim=True)
    bary = torch.zeros(views, height, width, 3, dtype=torch.float32, device=device)
    bary[view, rows, cols] = bary_out
    out_depth = None
    if depth is not None:
        out_depth = torch.full((views, height, width), float("inf"), dtype=torch.float32, device=device)
        out_depth[view, rows, cols] = (depth[faces[fid]] * bary_screen).sum(1)
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
