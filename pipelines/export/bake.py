"""Texture baking: fit a UV texture to observations of the mesh from known cameras.

Each observation is an image with a foreground mask seen through a camera.
The mesh is rasterised once per view (nearest face per pixel), which gives
the UV coordinate every observed pixel sees.  The texture starts from a
direct projection of the views onto the texels (see ``BakeConfig.project_init``)
and is then optimised, one random view per step, to reproduce the observed
colours:

    loss = L1(texture sampled at the pixels' UVs, observed colours) + 0.01 * TV(texture)

with Adam (lr 1e-2, betas (0.5, 0.9)) and a cosine learning rate decaying to
3e-5, as the official export does.  During the last 7 % of the steps only the
front and back views are used, so the two most reliable images have the last
word.  Texels outside every UV triangle are then filled by pull-push
inpainting (``fill_outside_charts``; the official export uses OpenCV's TELEA,
which costs about half a second per 1024 px texture on a CPU, whereas these
texels only ever reach the model through bilinear filtering and mipmaps).

Sampling is bilinear.  Unlike the official bake, only pixels that are both
masked and covered by the mesh contribute (the official bake lets masked but
uncovered pixels pull on texel (0, 0)).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from pipelines.base import ProgressCallback
from pipelines.export.cameras import Camera
from pipelines.export.clock import PhaseClock
from pipelines.export.raster import Rasterization, rasterize, rasterize_uv


@dataclass
class Observation:
    """One view to bake from."""

    camera: Camera
    image: torch.Tensor
    """(H, W, 3) float32 colours in [0, 1], H = W = camera.size."""
    mask: torch.Tensor
    """(H, W) bool: pixels that show the subject."""


@dataclass(frozen=True)
class BakeConfig:
    """Optimiser settings; the defaults are the official export's."""

    steps: int = 1000
    lr: float = 1e-2
    lr_final: float = 3e-5
    betas: tuple[float, float] = (0.5, 0.9)
    tv_weight: float = 0.01
    final_fraction: float = 0.07
    """Share of the last steps that use only the ``final_views``."""
    final_views: tuple[int, ...] = (0, 2)
    seed: int = 0
    project_init: bool = True
    """Start from the projection of the views onto the texels (each texel takes the
    depth-tested, cos^2-weighted mean of the views that see it) instead of zeros.
    The optimisation then refines an already close texture, so far fewer steps
    reach the same quality; the official bake starts from zeros."""
    depth_tolerance: float = 0.01
    """Texel-to-depth-buffer distance (world units) under which a texel counts as seen."""
    raster_batch: int = 8
    """Views of one size rasterised in one call (memory grows with it)."""


@dataclass
class _ViewSamples:
    grid: torch.Tensor
    """(1, 1, P, 2) grid_sample coordinates of the covered, masked pixels."""
    target: torch.Tensor
    """(P, 3) observed colours at those pixels."""


def _view_samples(
    vertices: torch.Tensor, faces: torch.Tensor, uvs: torch.Tensor, obs: Observation, raster: Rasterization
) -> _ViewSamples | None:
    keep = raster.mask & obs.mask.to(raster.mask.device)
    if not bool(keep.any()):
        return None
    uv = raster.interpolate(uvs, faces)[keep]  # (P, 2), v up
    grid = torch.stack([uv[:, 0] * 2.0 - 1.0, 1.0 - uv[:, 1] * 2.0], dim=1)  # row 0 of the texture is v = 1
    target = obs.image.to(device=vertices.device, dtype=torch.float32)[keep]  # (P, 3)
    return _ViewSamples(grid=grid.view(1, 1, -1, 2), target=target)


def _cosine_lr(step: int, total: int, start: float, end: float) -> float:
    return end + 0.5 * (start - end) * (1.0 + math.cos(math.pi * step / max(total, 1)))


def total_variation(texture: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference between neighbouring texels of a (1, C, H, W) image."""
    dy = (texture[:, :, 1:, :] - texture[:, :, :-1, :]).abs().mean()
    dx = (texture[:, :, :, 1:] - texture[:, :, :, :-1]).abs().mean()
    return dx + dy


def bake_texture(
    vertices: np.ndarray,
    faces: np.ndarray,
    uvs: np.ndarray,
    observations: Sequence[Observation],
    texture_size: int,
    *,
    config: BakeConfig = BakeConfig(),
    callback: ProgressCallback | None = None,
    device: str | torch.device = "cpu",
    timings: dict[str, float] | None = None,
    cpu_timings: dict[str, float] | None = None,
) -> np.ndarray:
    """Bake a ``texture_size``-square RGB texture; returns (S, S, 3) uint8, row 0 = v 1.

    ``callback("export", step, total)`` is called after every optimisation step
    and may raise to stop the bake.  ``timings``, if given, receives the seconds
    spent in ``bake.rasterize``, ``bake.project``, ``bake.optimize`` and ``bake.inpaint``
    (``cpu_timings`` the CPU seconds of the same phases).
    """
    device = torch.device(device)
    clock = PhaseClock(device, timings, cpu_timings)
    v = torch.as_tensor(vertices, dtype=torch.float32, device=device)
    f = torch.as_tensor(faces, dtype=torch.int64, device=device)
    uv = torch.as_tensor(uvs, dtype=torch.float32, device=device)

    rasters = rasterize_views(v, f, [obs.camera for obs in observations], config.raster_batch)
    samples = [_view_samples(v, f, uv, obs, r) for obs, r in zip(observations, rasters)]
    usable = [i for i, s in enumerate(samples) if s is not None]
    uv_raster = rasterize_uv(f, uv, texture_size)
    clock.lap("bake.rasterize")
    if config.project_init:
        initial, seen = project_views(v, f, uv_raster, observations, rasters, config.depth_tolerance)
        # Texels no view sees (grazing or hidden) start from their seen neighbours.
        initial = fill_outside_charts(initial.clamp(0, 1), seen)
    else:
        initial = torch.zeros(texture_size, texture_size, 3, device=device)
    texture = initial.permute(2, 0, 1).unsqueeze(0).contiguous().requires_grad_(True)  # (1, 3, S, S)
    clock.lap("bake.project")
    if usable and config.steps > 0:
        final = [i for i in config.final_views if i in usable] or usable
        switch = int(round(config.steps * (1.0 - config.final_fraction)))
        generator = torch.Generator().manual_seed(config.seed)
        # One fused kernel per step on a GPU instead of a dozen.
        optimizer = torch.optim.Adam([texture], lr=config.lr, betas=config.betas, fused=device.type == "cuda")
        for step in range(config.steps):
            pool = usable if step < switch else final
            view = samples[pool[int(torch.randint(len(pool), (1,), generator=generator))]]
            for group in optimizer.param_groups:
                group["lr"] = _cosine_lr(step, config.steps, config.lr, config.lr_final)
            rendered = F.grid_sample(texture, view.grid, mode="bilinear", align_corners=False)  # (1, 3, 1, P)
            rendered = rendered[0, :, 0].T  # (P, 3)
            loss = (rendered - view.target).abs().mean() + config.tv_weight * total_variation(texture)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if callback is not None:
                callback("export", step + 1, config.steps)

    image = texture.detach()[0].clamp(0.0, 1.0).permute(1, 2, 0)  # (S, S, 3)
    clock.lap("bake.optimize")
    result = fill_outside_charts(image, uv_raster.mask)
    result = (result * 255.0 + 0.5).to(torch.uint8).cpu().numpy()
    clock.lap("bake.inpaint")
    return result


def project_views(
    vertices: torch.Tensor,
    faces: torch.Tensor,
    uv_raster: Rasterization,
    observations: Sequence[Observation],
    rasters: Sequence[Rasterization],
    depth_tolerance: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(S, S, 3) texture where each texel is the weighted mean of the views that see it,
    and the (S, S) bool map of the texels some view sees.

    A view sees a texel when the texel's 3D point projects into the view's
    mask and lies within ``depth_tolerance`` of the view's depth buffer; its
    weight is cos^2 of the angle between the face normal and the view ray.
    Texels no view sees stay 0.
    """
    size = uv_raster.face_id.shape[0]
    texel = uv_raster.mask.view(-1)  # (S*S,)
    fid = uv_raster.face_id.view(-1)[texel]  # (Q,)
    points = uv_raster.interpolate(vertices, faces).view(-1, 3)[texel]  # (Q, 3)
    corners = vertices[faces[fid]]  # (Q, 3, 3)
    normals = F.normalize(torch.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0], dim=1), dim=1)
    total = torch.zeros_like(points)
    weight = torch.zeros(len(points), device=points.device)
    for obs, raster in zip(observations, rasters):
        size_v = obs.camera.size
        xy, depth, _ = obs.camera.project(points)
        col = xy[:, 0].floor().long()
        row = xy[:, 1].floor().long()
        inside = (col >= 0) & (col < size_v) & (row >= 0) & (row < size_v)
        col, row = col.clamp(0, size_v - 1), row.clamp(0, size_v - 1)
        zbuf = raster.depth[row, col]
        seen = inside & obs.mask.to(points.device)[row, col] & ((depth - zbuf).abs() < depth_tolerance)
        # View ray direction: one step further in depth, minus the point.
        eye_offset = obs.camera.project(points + 1e-3 * normals)[1] - depth  # < 0 when facing the camera
        cos = (-eye_offset / 1e-3).clamp(min=0.0, max=1.0)
        w = seen.float() * cos * cos
        grid = torch.stack([xy[:, 0] / size_v * 2 - 1, xy[:, 1] / size_v * 2 - 1], dim=1).view(1, 1, -1, 2)
        image = obs.image.to(device=points.device, dtype=torch.float32).permute(2, 0, 1).unsqueeze(0)  # (1, 3, H, W)
        color = F.grid_sample(image, grid, mode="bilinear", align_corners=False)[0, :, 0].T  # (Q, 3)
        total += w.unsqueeze(1) * color
        weight += w
    mean = total / weight.clamp(min=1e-8).unsqueeze(1)
    out = torch.zeros(size * size, 3, device=points.device)
    out[texel] = mean
    seen_map = torch.zeros(size * size, dtype=torch.bool, device=points.device)
    seen_map[texel] = weight > 0
    return out.view(size, size, 3), seen_map.view(size, size)


def rasterize_views(
    vertices: torch.Tensor, faces: torch.Tensor, cameras: Sequence[Camera], batch: int = 8
) -> list[Rasterization]:
    """Rasterise the mesh in every camera (nearest face per pixel, with depth).

    Cameras of the same kind and size are rasterised ``batch`` at a time;
    the result is one single-view ``Rasterization`` per camera, in order.
    """
    groups: dict[tuple[str, int], list[int]] = {}
    for index, camera in enumerate(cameras):
        groups.setdefault((type(camera).__name__, camera.size), []).append(index)
    out: list[Rasterization | None] = [None] * len(cameras)
    for (_, size), members in groups.items():
        for start in range(0, len(members), max(batch, 1)):
            chunk = members[start : start + max(batch, 1)]
            projected = [cameras[i].project(vertices) for i in chunk]
            xy = torch.stack([p[0] for p in projected])  # (B, V, 2)
            depth = torch.stack([p[1] for p in projected])  # (B, V)
            w = None if projected[0][2] is None else torch.stack([p[2] for p in projected])  # (B, V)
            raster = rasterize(xy, faces, size, size, depth=depth, w=w)
            for k, i in enumerate(chunk):
                out[i] = Rasterization(face_id=raster.face_id[k], bary=raster.bary[k], depth=raster.depth[k])
    return out  # type: ignore[return-value]


def fill_outside_charts(image: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
    """Fill the texels of an (S, S, C) image where the (S, S) ``known`` mask is False.

    Pull-push: the known texels are averaged into ever coarser levels (each
    level's texel is the mean of the known texels below it), then every
    unknown texel takes the bilinearly upsampled value of the finest level
    that has data around it.  Known texels are returned unchanged, unknown
    ones next to a chart get (nearly) the chart's border colour, and the fill
    is smooth further out.  A mask with no known texel is returned as is.
    """
    if bool(known.all()) or not bool(known.any()):
        return image
    weight = known.to(image.dtype).unsqueeze(0).unsqueeze(0)  # (1, 1, H, W)
    colour = image.permute(2, 0, 1).unsqueeze(0) * weight  # (1, C, H, W)
    levels = [(colour, weight)]
    while min(levels[-1][1].shape[-2:]) > 1:
        c, w = levels[-1]
        levels.append((F.avg_pool2d(c, 2, ceil_mode=True), F.avg_pool2d(w, 2, ceil_mode=True)))
    c, w = levels[-1]
    filled = c / w.clamp(min=1e-12)
    for c, w in reversed(levels[:-1]):
        coarse = F.interpolate(filled, size=c.shape[-2:], mode="bilinear", align_corners=False)
        filled = torch.where(w > 0, c / w.clamp(min=1e-12), coarse)
    out = filled[0].permute(1, 2, 0)  # (H, W, C)
    return torch.where(known.unsqueeze(-1), image, out)


def inpaint_outside_charts(image: np.ndarray, covered: np.ndarray) -> np.ndarray:
    """``fill_outside_charts`` for an (S, S, 3) uint8 image and an (S, S) bool mask."""
    filled = fill_outside_charts(torch.from_numpy(image.astype(np.float32)), torch.from_numpy(covered))
    return np.clip(filled.numpy() + 0.5, 0, 255).astype(np.uint8)
