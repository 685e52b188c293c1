"""Rendering of 3D Gaussians by tile-based alpha compositing, in plain PyTorch.

This is the standard EWA splatting model: each Gaussian is projected to a 2D
Gaussian in the image (its 3D covariance pushed through the projection's
Jacobian), dilated by a small screen-space filter (``kernel_size`` pixels^2,
with the opacity scaled by sqrt(det before / det after) so that the
integrated weight is preserved, as in Mip-Splatting), and the Gaussians are
composited front to back per pixel:

    C = sum_i c_i a_i T_i,   T_i = prod_{j<i} (1 - a_j),   a_i = min(0.99, o_i exp(-d^T Conic_i d / 2))

with contributions below 1/255 dropped.  The image is cut into
``tile`` x ``tile`` tiles; every (tile, Gaussian) pair whose Gaussian's
bounding box (``sigma_extent`` standard deviations along each image axis)
touches the tile is listed, and the pairs are sorted by tile, then depth.

A pair only ever touches the pixels inside its Gaussian's box (so the image
does not depend on the tile size).  On CUDA with Triton the pairs are
composited by one kernel program per tile (:mod:`pipelines.export.splat_kernel`).
Elsewhere they are composited without any per-tile loop: for a run of whole
tiles (at most about ``pixels_per_chunk`` / tile pixels pairs), the alphas of all their pairs
at all pixels of their tile form one (pairs, tile pixels) matrix, and the
transmittances are a *segmented* cumulative sum of log(1 - a) down that
matrix (one float64 cumsum, minus its value where each tile's run starts, so
the precision does not depend on how many pairs come before).  The weighted
colours are summed per tile with one ``index_add_``.  A view thus costs a
fixed few dozen large tensor operations per chunk, whatever the depth
complexity of its busiest tile.  No gradients are needed (the renders are bake
targets).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from pipelines.export import splat_kernel
from pipelines.export.cameras import OrthographicCamera, PerspectiveCamera
from pipelines.geometry import Gaussians


@dataclass(frozen=True)
class SplatConfig:
    kernel_size: float = 0.1
    """Screen-space dilation added to each 2D covariance, in pixels^2."""
    near: float = 0.2
    sigma_extent: float = 3.0
    """Footprint half-extent in standard deviations (per image axis)."""
    tile: int = 8
    """Tile side in pixels for the PyTorch compositing (8 wastes fewer pixel evaluations on 16 px
    footprints than 16)."""
    use_kernel: bool = True
    """Composite with the Triton kernel where it is available (CUDA); False forces the PyTorch path."""
    kernel_tile: int = 16
    """Tile side for the Triton kernel on CUDA (one program of 256 pixels per tile).  The image does
    not depend on the tile size: a pair only touches pixels inside its Gaussian's box."""
    pixels_per_chunk: int = 1 << 24
    """(pair, tile pixel) entries composited at once: bounds memory (about 80 bytes each)."""


@dataclass
class GaussianTensors:
    """Gaussians on a device, ready to render."""

    xyz: torch.Tensor  # (G, 3)
    covariance: torch.Tensor  # (G, 3, 3)
    opacity: torch.Tensor  # (G,)
    colors: torch.Tensor  # (G, 3)

    @classmethod
    def from_gaussians(cls, g: Gaussians, device: str | torch.device = "cpu") -> GaussianTensors:
        q = torch.as_tensor(g.rotation, dtype=torch.float32, device=device)
        q = q / q.norm(dim=1, keepdim=True).clamp(min=1e-12)
        w, x, y, z = q.unbind(1)
        rot = torch.stack(
            [
                1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
                2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
                2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
            ],
            dim=1,
        ).view(-1, 3, 3)  # (G, 3, 3), columns are the local axes
        scale = torch.as_tensor(g.scaling, dtype=torch.float32, device=device)
        m = rot * scale.unsqueeze(1)  # (G, 3, 3) = R S
        return cls(
            xyz=torch.as_tensor(g.xyz, dtype=torch.float32, device=device),
            covariance=m @ m.transpose(1, 2),
            opacity=torch.as_tensor(g.opacity, dtype=torch.float32, device=device).view(-1),
            colors=torch.as_tensor(g.colors, dtype=torch.float32, device=device),
        )


def _project(g: GaussianTensors, camera, config: SplatConfig):
    """Screen means (G, 2), depths (G,), 2D covariances (G, 2, 2) and a validity mask."""
    device = g.xyz.device
    if isinstance(camera, PerspectiveCamera):
        axes, eye = camera.world_to_camera(device)
        local = (g.xyz - eye) @ axes.T  # (G, 3): right, up, forward
        z = local[:, 2]
        valid = z > config.near
        zs = z.clamp(min=config.near)
        f = camera.focal
        mean = torch.stack([f * local[:, 0] / zs + 0.5 * camera.size, -f * local[:, 1] / zs + 0.5 * camera.size], 1)
        jac = torch.zeros(len(z), 2, 3, device=device)
        jac[:, 0, 0] = f / zs
        jac[:, 0, 2] = -f * local[:, 0] / zs**2
        jac[:, 1, 1] = -f / zs
        jac[:, 1, 2] = f * local[:, 1] / zs**2
        depth = z
    elif isinstance(camera, OrthographicCamera):
        axes = torch.tensor([camera.right, camera.up, camera.forward], dtype=torch.float32, device=device)
        xy, depth, _ = camera.project(g.xyz)
        mean = xy
        s = camera.size / (2.0 * camera.half_extent)
        jac = torch.zeros(len(depth), 2, 3, device=device)
        jac[:, 0, 0] = s
        jac[:, 1, 1] = -s
        valid = torch.ones_like(depth, dtype=torch.bool)
    else:
        raise TypeError(f"unsupported camera {type(camera).__name__}")
    t = jac @ axes  # (G, 2, 3): world -> screen Jacobian
    cov2d = t @ g.covariance @ t.transpose(1, 2)  # (G, 2, 2)
    return mean, depth, cov2d, valid


@torch.no_grad()
def render_gaussians(
    g: GaussianTensors,
    camera: PerspectiveCamera | OrthographicCamera,
    *,
    config: SplatConfig = SplatConfig(),
) -> tuple[torch.Tensor, torch.Tensor]:
    """Render on a black background; returns (H, W, 3) colours and (H, W) alpha."""
    device = g.xyz.device
    size = camera.size
    use_kernel = config.use_kernel and splat_kernel.available(device)
    tile_side = config.kernel_tile if use_kernel else config.tile
    tiles_x = (size + tile_side - 1) // tile_side
    num_tiles = tiles_x * tiles_x
    pixels_per_tile = tile_side * tile_side
    mean, depth, cov2d, valid = _project(g, camera, config)

    det0 = cov2d[:, 0, 0] * cov2d[:, 1, 1] - cov2d[:, 0, 1] ** 2
    a = cov2d[:, 0, 0] + config.kernel_size
    c = cov2d[:, 1, 1] + config.kernel_size
    b = cov2d[:, 0, 1]
    det = a * c - b * b
    opacity = g.opacity * torch.sqrt((det0 / det.clamp(min=1e-12)).clamp(min=2.5e-5))
    valid = valid & (det > 1e-12)
    conic = torch.stack([c, -b, a], dim=1) / det.clamp(min=1e-12).unsqueeze(1)  # (G, 3): inverse of [[a, b], [b, c]]
    # Half-extents of the bounding box of the sigma_extent ellipse: k * sqrt(variance along x / y).
    extent = config.sigma_extent * torch.sqrt(torch.stack([a, c], dim=1).clamp(min=0.0))  # (G, 2)
    lo = torch.floor((mean - extent) / tile_side).long().clamp(0, tiles_x - 1)  # (G, 2)
    hi = torch.floor((mean + extent) / tile_side).long().clamp(0, tiles_x - 1)
    on_screen = (mean + extent >= 0).all(1) & (mean - extent < size).all(1)
    keep = torch.nonzero(valid & on_screen & (opacity > 1.0 / 255.0)).squeeze(1)

    color = torch.zeros(num_tiles, pixels_per_tile, 3, device=device)
    transmittance = torch.ones(num_tiles, pixels_per_tile, device=device)
    if len(keep) > 0:
        # (tile, Gaussian) pairs, sorted by tile then depth.
        span = hi[keep] - lo[keep] + 1  # (K, 2)
        count = span[:, 0] * span[:, 1]
        owner = torch.repeat_interleave(torch.arange(len(keep), device=device), count)
        offset = torch.arange(len(owner), device=device) - torch.repeat_interleave(torch.cumsum(count, 0) - count, count)
        tx = lo[keep, 0][owner] + offset % span[owner, 0]
        ty = lo[keep, 1][owner] + torch.div(offset, span[owner, 0], rounding_mode="floor")
        tile = ty * tiles_x + tx
        depth_rank = torch.empty_like(keep)
        depth_rank[torch.argsort(depth[keep])] = torch.arange(len(keep), device=device)
        order = torch.argsort(tile * len(keep) + depth_rank[owner])
        pair_gaussian = keep[owner[order]]  # (P,) Gaussian ids, grouped by tile, near to far
        pair_tile = tile[order]  # (P,) non-decreasing
        tile_count = torch.bincount(tile, minlength=num_tiles)
        tile_start = torch.cumsum(tile_count, 0) - tile_count
        if use_kernel:
            color, transmittance = splat_kernel.composite_tiles(
                pair_gaussian, tile_start, tile_count, mean, conic, opacity, g.colors, extent, tiles_x, tile_side
            )
            return _tiles_to_image(color, transmittance, tiles_x, tile_side, size)

        # Pixel centres of each tile: (T, t*t, 2).
        local = torch.arange(tile_side, device=device, dtype=torch.float32) + 0.5
        py, px = torch.meshgrid(local, local, indexing="ij")
        tile_ids = torch.arange(num_tiles, device=device)
        origin = torch.stack(
            [(tile_ids % tiles_x) * tile_side, torch.div(tile_ids, tiles_x, rounding_mode="floor") * tile_side], 1
        )
        pixels = origin.float().unsqueeze(1) + torch.stack([px.reshape(-1), py.reshape(-1)], 1).unsqueeze(0)

        for first, last in _chunks(tile_start, len(pair_gaussian), config.pixels_per_chunk // pixels_per_tile):
            _composite_chunk(
                pair_gaussian[first:last], pair_tile[first:last], pixels, mean, conic, opacity, g.colors, extent,
                color, transmittance,
            )
    return _tiles_to_image(color, transmittance, tiles_x, tile_side, size)


def _tiles_to_image(
    color: torch.Tensor, transmittance: torch.Tensor, tiles_x: int, tile_side: int, size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """(T, t*t, 3) colours and (T, t*t) transmittances -> (H, W, 3) image and (H, W) alpha."""
    side = tiles_x * tile_side
    image = color.view(tiles_x, tiles_x, tile_side, tile_side, 3).permute(0, 2, 1, 3, 4).reshape(side, side, 3)
    alpha_img = (1.0 - transmittance).view(tiles_x, tiles_x, tile_side, tile_side).permute(0, 2, 1, 3).reshape(side, side)
    return image[:size, :size].clamp(0.0, 1.0), alpha_img[:size, :size]


def _chunks(tile_start: torch.Tensor, num_pairs: int, budget: int) -> list[tuple[int, int]]:
    """Pair ranges [first, last) made of whole tiles, each of about ``budget`` pairs
    (a single tile with more pairs than that is a chunk of its own)."""
    marks = torch.arange(0, num_pairs, max(budget, 1), device=tile_start.device)
    # The first tile starting at or after each mark begins a chunk.
    begin = torch.searchsorted(tile_start, marks)
    cuts = torch.where(begin < len(tile_start), tile_start[begin.clamp(max=len(tile_start) - 1)], num_pairs)
    bounds = sorted(set(cuts.tolist()) | {0, num_pairs})
    return [(f, l) for f, l in zip(bounds[:-1], bounds[1:]) if l > f]


def _composite_chunk(
    gid: torch.Tensor,
    tid: torch.Tensor,
    pixels: torch.Tensor,
    mean: torch.Tensor,
    conic: torch.Tensor,
    opacity: torch.Tensor,
    colors: torch.Tensor,
    extent: torch.Tensor,
    color: torch.Tensor,
    transmittance: torch.Tensor,
) -> None:
    """Composite the pairs (``gid``, ``tid``) of whole tiles into ``color`` and ``transmittance``.

    ``gid`` / ``tid`` (Q,) are the Gaussian and tile of each pair, sorted by
    tile then depth, and every tile in ``tid`` has all its pairs here.
    ``extent`` (G, 2) is each Gaussian's box half-extent in pixels.
    ``color`` is (T, t*t, 3) and ``transmittance`` (T, t*t).

    Entries are laid out pixel-major, (t*t, Q), so that the running sum over
    the pairs is one cumsum of a flat contiguous vector (a full-speed device
    scan; a scan along the leading dimension of a (Q, t*t) matrix would run
    t*t threads sequentially down Q on a GPU).
    """
    d = pixels[tid].transpose(0, 1) - mean[gid].unsqueeze(0)  # (t*t, Q, 2)
    cn = conic[gid]  # (Q, 3)
    power = -0.5 * (cn[:, 0] * d[..., 0] ** 2 + cn[:, 2] * d[..., 1] ** 2) - cn[:, 1] * d[..., 0] * d[..., 1]
    inside = (d.abs() <= extent[gid].unsqueeze(0)).all(dim=2)  # (t*t, Q): pixel within the Gaussian's box
    del d
    alpha = (opacity[gid] * torch.exp(power.clamp(max=0.0))).clamp(max=0.99)  # (t*t, Q)
    del power
    alpha = torch.where(inside & (alpha >= 1.0 / 255.0), alpha, torch.zeros_like(alpha))
    del inside
    log_survive = torch.log1p(-alpha)  # (t*t, Q)
    # Flat running sum (float64: it runs over every entry of the chunk) viewed back as (t*t, Q).
    inclusive = torch.cumsum(log_survive.reshape(-1), dim=0, dtype=torch.float64).view(log_survive.shape)
    # Each tile's run of pairs starts at its first pair; the sum before it is subtracted.
    tiles, run_length = torch.unique_consecutive(tid, return_counts=True)  # (N,)
    run_first = torch.cumsum(run_length, 0) - run_length  # (N,) local index of each run's first pair
    before_run = inclusive[:, run_first] - log_survive[:, run_first].double()  # (t*t, N)
    run_of_pair = torch.repeat_interleave(torch.arange(len(tiles), device=tid.device), run_length)  # (Q,)
    exclusive = inclusive - log_survive.double() - before_run[:, run_of_pair]  # (t*t, Q): log T before each pair
    weight = alpha * torch.exp(exclusive).float()  # (t*t, Q)
    del exclusive
    per_tile = torch.zeros(weight.shape[0], len(tiles), 3, device=weight.device)  # (t*t, N, 3)
    per_tile.index_add_(1, run_of_pair, weight.unsqueeze(2) * colors[gid].unsqueeze(0))  # sum of (t*t, Q, 3) per run
    color[tiles] += per_tile.transpose(0, 1)
    run_last = run_first + run_length - 1
    transmittance[tiles] = torch.exp(inclusive[:, run_last] - before_run).float().T  # (N, t*t)
