"""Per-tile front-to-back compositing of sorted Gaussians as one Triton kernel (CUDA only).

The GPU counterpart of :func:`pipelines.export.splat._composite_chunk`: the
same pairs (sorted by tile, then depth), the same alpha and the same
per-pixel footprint test, but one program per tile walks its pairs in order
and keeps each pixel's colour and transmittance in registers:

    a = min(0.99, o exp(min(0, -d^T Conic d / 2)))   (0 below 1/255 or outside the box)
    C += c a T,   T *= 1 - a

instead of materialising a (pixels, pairs) matrix.  A view of ~300 k
Gaussians at 1024 px thus costs about a millisecond of compositing instead
of tens.  Imported only where Triton and a CUDA device are present;
:func:`available` says whether it can be used.
"""

from __future__ import annotations

import torch

try:
    import triton
    import triton.language as tl
except ImportError:  # CPU-only installs have no Triton; the PyTorch path renders there
    triton = None

PAIR_FIELDS = 10
"""Floats per pair in the packed table: mean x, y, conic a, b, c, opacity, r, g, b, unused."""


def available(device: torch.device) -> bool:
    """Whether the kernel can composite on ``device``."""
    return triton is not None and device.type == "cuda"


if triton is not None:

    @triton.jit
    def _composite_tiles(
        pairs_ptr,  # (P, PAIR_FIELDS) float32, grouped by tile, near to far
        extent_ptr,  # (P, 2) float32: footprint half-extent in pixels
        tile_start_ptr,  # (T,) int64
        tile_count_ptr,  # (T,) int64
        color_ptr,  # (T, TILE*TILE, 3) float32 out
        transmittance_ptr,  # (T, TILE*TILE) float32 out
        tiles_x,
        TILE: tl.constexpr,
        FIELDS: tl.constexpr,
    ):
        tile = tl.program_id(0)
        start = tl.load(tile_start_ptr + tile)
        count = tl.load(tile_count_ptr + tile)
        lane = tl.arange(0, TILE * TILE)
        px = ((tile % tiles_x) * TILE + lane % TILE).to(tl.float32) + 0.5
        py = ((tile // tiles_x) * TILE + lane // TILE).to(tl.float32) + 0.5
        transmittance = tl.full([TILE * TILE], 1.0, tl.float32)
        red = tl.zeros([TILE * TILE], tl.float32)
        green = tl.zeros([TILE * TILE], tl.float32)
        blue = tl.zeros([TILE * TILE], tl.float32)
        for j in range(count):
            row = pairs_ptr + (start + j) * FIELDS
            dx = px - tl.load(row)
            dy = py - tl.load(row + 1)
            power = -0.5 * (tl.load(row + 2) * dx * dx + tl.load(row + 4) * dy * dy) - tl.load(row + 3) * dx * dy
            alpha = tl.minimum(tl.load(row + 5) * tl.exp(tl.minimum(power, 0.0)), 0.99)
            inside = (tl.abs(dx) <= tl.load(extent_ptr + (start + j) * 2)) & (
                tl.abs(dy) <= tl.load(extent_ptr + (start + j) * 2 + 1)
            )
            alpha = tl.where(inside & (alpha >= 1.0 / 255.0), alpha, 0.0)
            weight = alpha * transmittance
            red += weight * tl.load(row + 6)
            green += weight * tl.load(row + 7)
            blue += weight * tl.load(row + 8)
            transmittance = transmittance * (1.0 - alpha)
        out = color_ptr + (tile * TILE * TILE + lane) * 3
        tl.store(out, red)
        tl.store(out + 1, green)
        tl.store(out + 2, blue)
        tl.store(transmittance_ptr + tile * TILE * TILE + lane, transmittance)


def composite_tiles(
    pair_gaussian: torch.Tensor,
    tile_start: torch.Tensor,
    tile_count: torch.Tensor,
    mean: torch.Tensor,
    conic: torch.Tensor,
    opacity: torch.Tensor,
    colors: torch.Tensor,
    extent: torch.Tensor,
    tiles_x: int,
    tile_side: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Composite every tile: -> colour (T, t*t, 3) and transmittance (T, t*t).

    ``pair_gaussian`` (P,) lists each tile's Gaussians near to far, tile ``k``'s
    run being ``[tile_start[k], tile_start[k] + tile_count[k])``.  ``mean``
    (G, 2), ``conic`` (G, 3), ``opacity`` (G,), ``colors`` (G, 3) and
    ``extent`` (G, 2) describe the projected Gaussians.
    """
    num_tiles = tiles_x * tiles_x
    device = mean.device
    table = torch.cat(
        [mean, conic, opacity.unsqueeze(1), colors, torch.zeros_like(opacity).unsqueeze(1)], dim=1
    ).float()  # (G, PAIR_FIELDS)
    pairs = table[pair_gaussian].contiguous()  # (P, PAIR_FIELDS): one contiguous row per pair
    pair_extent = extent.float()[pair_gaussian].contiguous()  # (P, 2)
    color = torch.empty(num_tiles, tile_side * tile_side, 3, device=device)
    transmittance = torch.empty(num_tiles, tile_side * tile_side, device=device)
    _composite_tiles[(num_tiles,)](
        pairs, pair_extent, tile_start.contiguous(), tile_count.contiguous(), color, transmittance, tiles_x,
        TILE=tile_side, FIELDS=PAIR_FIELDS, num_warps=4,
    )
    return color, transmittance
