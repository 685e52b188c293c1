"""Rendering of 3D Gaussians by tile-based alpha compositing, in plain PyTorch.

This is the standard EWA splatting model: each Gaussian is projected to a 2D
Gaussian in the image (its 3D covariance pushed through the projection's
Jacobian), dilated by a small screen-space filter (``kernel_size`` pixels^2,
with the opacity scaled by sqrt(det before / det after) so that the
integrated weight is preserved, as in Mip-Splatting), and the Gaussians are
composited front to back per pixel:

    C = sum_i c_i a_i prod_{j<i} (1 - a_j),   a_i = min(0.99, o_i exp(-d^T Conic_i d / 2))

with contributions below 1/255 dropped.  The image is cut into 16 x 16 tiles;
every (tile, Gaussian) pair is listed and sorted by tile, then depth.  Each
round composites the next ``chunk`` Gaussians of every tile that still has
some, all tiles at once (a cumulative product over the chunk, carried
transmittance between rounds), so a view costs a few dozen batched tensor
operations per round.  No gradients are needed (the renders are bake targets).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from pipelines.export.cameras import OrthographicCamera, PerspectiveCamera
from pipelines.geometry import Gaussians

TILE = 16


@dataclass(frozen=True)
class SplatConfig:
    kernel_size: float = 0.1
    """Screen-space dilation added to each 2D covariance, in pixels^2."""
    near: float = 0.2
    chunk: int = 64
    """Gaussians composited per tile per round."""
    sigma_extent: float = 3.0
    """Footprint radius in standard deviations."""


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
    tiles_x = (size + TILE - 1) // TILE
    num_tiles = tiles_x * tiles_x
    mean, depth, cov2d, valid = _project(g, camera, config)

    det0 = cov2d[:, 0, 0] * cov2d[:, 1, 1] - cov2d[:, 0, 1] ** 2
    a = cov2d[:, 0, 0] + config.kernel_size
    c = cov2d[:, 1, 1] + config.kernel_size
    b = cov2d[:, 0, 1]
    det = a * c - b * b
    opacity = g.opacity * torch.sqrt((det0 / det.clamp(min=1e-12)).clamp(min=2.5e-5))
    valid = valid & (det > 1e-12)
    conic = torch.stack([c, -b, a], dim=1) / det.clamp(min=1e-12).unsqueeze(1)  # (G, 3): inverse of [[a, b], [b, c]]
    half_trace = 0.5 * (a + c)
    radius = config.sigma_extent * torch.sqrt(half_trace + torch.sqrt((half_trace**2 - det).clamp(min=0.0)))
    lo = torch.floor((mean - radius.unsqueeze(1)) / TILE).long().clamp(0, tiles_x - 1)  # (G, 2)
    hi = torch.floor((mean + radius.unsqueeze(1)) / TILE).long().clamp(0, tiles_x - 1)
    on_screen = (mean + radius.unsqueeze(1) >= 0).all(1) & (mean - radius.unsqueeze(1) < size).all(1)
    keep = torch.nonzero(valid & on_screen & (opacity > 1.0 / 255.0)).squeeze(1)

    color = torch.zeros(num_tiles, TILE * TILE, 3, device=device)
    transmittance = torch.ones(num_tiles, TILE * TILE, device=device)
    if len(keep) > 0:
        # (tile, Gaussian) pairs, sorted by tile then depth.
        span = hi[keep] - lo[keep] + 1  # (K, 2)
        count = span[:, 0] * span[:, 1]
        owner = torch.repeat_interleave(torch.arange(len(keep), device=device), count)
        offset = torch.arange(int(count.sum()), device=device) - torch.repeat_interleave(
            torch.cumsum(count, 0) - count, count
        )
        tx = lo[keep, 0][owner] + offset % span[owner, 0]
        ty = lo[keep, 1][owner] + torch.div(offset, span[owner, 0], rounding_mode="floor")
        tile = ty * tiles_x + tx
        depth_rank = torch.empty_like(keep)
        depth_rank[torch.argsort(depth[keep])] = torch.arange(len(keep), device=device)
        order = torch.argsort(tile * len(keep) + depth_rank[owner])
        pair_gaussian = keep[owner[order]]  # (P,) Gaussian ids, grouped by tile, near to far
        tile_count = torch.bincount(tile, minlength=num_tiles)
        tile_start = torch.cumsum(tile_count, 0) - tile_count

        # Pixel centres of each tile: (T, 256, 2).
        local = torch.arange(TILE, device=device, dtype=torch.float32) + 0.5
        py, px = torch.meshgrid(local, local, indexing="ij")
        tile_ids = torch.arange(num_tiles, device=device)
        origin = torch.stack([(tile_ids % tiles_x) * TILE, torch.div(tile_ids, tiles_x, rounding_mode="floor") * TILE], 1)
        pixels = origin.float().unsqueeze(1) + torch.stack([px.reshape(-1), py.reshape(-1)], 1).unsqueeze(0)

        # Round r composites the Gaussians r*chunk .. (r+1)*chunk - 1 of every tile that has them.
        chunk = config.chunk
        rounds = int((tile_count.max().item() + chunk - 1) // chunk)
        slot = torch.arange(chunk, device=device)
        for r in range(rounds):
            active = torch.nonzero(tile_count > r * chunk).squeeze(1)  # (A,)
            index = r * chunk + slot.unsqueeze(0)  # (1, chunk)
            present = index < tile_count[active].unsqueeze(1)  # (A, chunk)
            pair = (tile_start[active].unsqueeze(1) + index).clamp(max=len(pair_gaussian) - 1)
            gid = pair_gaussian[pair]  # (A, chunk)
            d = pixels[active].unsqueeze(1) - mean[gid].unsqueeze(2)  # (A, chunk, 256, 2)
            cn = conic[gid]  # (A, chunk, 3)
            power = -0.5 * (
                cn[..., 0:1] * d[..., 0] ** 2 + cn[..., 2:3] * d[..., 1] ** 2
            ) - cn[..., 1:2] * d[..., 0] * d[..., 1]  # (A, chunk, 256)
            alpha = (opacity[gid].unsqueeze(2) * torch.exp(power.clamp(max=0.0))).clamp(max=0.99)
            alpha = torch.where((alpha >= 1.0 / 255.0) & present.unsqueeze(2), alpha, torch.zeros_like(alpha))
            survive = torch.cumprod(1.0 - alpha, dim=1)  # (A, chunk, 256)
            before = torch.cat([torch.ones_like(survive[:, :1]), survive[:, :-1]], dim=1)
            weight = alpha * before * transmittance[active].unsqueeze(1)  # (A, chunk, 256)
            color[active] += torch.einsum("akp,akc->apc", weight, g.colors[gid])
            transmittance[active] = transmittance[active] * survive[:, -1]

    # Tiles -> image: (T, 256, C) -> (H, W, C).
    image = color.view(tiles_x, tiles_x, TILE, TILE, 3).permute(0, 2, 1, 3, 4).reshape(tiles_x * TILE, tiles_x * TILE, 3)
    alpha_img = (1.0 - transmittance).view(tiles_x, tiles_x, TILE, TILE).permute(0, 2, 1, 3).reshape(tiles_x * TILE, -1)
    return image[:size, :size].clamp(0.0, 1.0), alpha_img[:size, :size]
