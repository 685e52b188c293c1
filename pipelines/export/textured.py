"""The full export of a generated person: mesh + views (+ Gaussians) -> GLB and PLY.

Steps (timed in ``MeshOutput.timings``, seconds):

1. ``simplify``  quadric decimation removing ``simplify`` of the faces;
2. ``holes``     removal of hidden inner parts and small-hole filling (split into
                 ``holes.visibility`` and ``holes.cut``);
3. ``uv``        xatlas parametrisation;
4. ``observe``   the five stage-1 views (masked by their normal maps) and, when
                 Gaussians are given, renders of them from cameras on a sphere;
5. ``bake``      texture fitting (the progress callback ticks once per step)
                 and inpainting outside the UV charts (split further into
                 ``bake.rasterize``, ``bake.project``, ``bake.optimize``, ``bake.inpaint``);
6. ``encode``    GLB (y-up, PBR) and PLY (z-up, vertex colours from the texture).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import torch
from PIL import Image
from scipy.spatial import cKDTree

from pipelines.base import MeshOutput, MultiviewOutput, ProgressCallback
from pipelines.export.bake import BakeConfig, Observation, bake_texture
from pipelines.export.cameras import canonical_cameras, sphere_cameras
from pipelines.export.clock import PhaseClock
from pipelines.export.gltf import glb_bytes, ply_bytes
from pipelines.export.holes import HoleFillConfig, remove_inner_faces
from pipelines.export.simplify import simplify_mesh
from pipelines.export.splat import GaussianTensors, SplatConfig, render_gaussians
from pipelines.export.threads import export_thread_limit
from pipelines.export.uv import unwrap_uv
from pipelines.geometry import Gaussians, TriangleMesh


@dataclass(frozen=True)
class ExportConfig:
    """Settings of the export; defaults follow the official model's export."""

    hole_fill: HoleFillConfig | None = field(default_factory=HoleFillConfig)
    """``None`` skips the inner-face removal and hole filling."""
    bake: BakeConfig = field(default_factory=BakeConfig)
    gaussian_views: int = 95
    gaussian_resolution: int = 1024
    gaussian_fov_degrees: float = 40.0
    gaussian_alpha_threshold: float = 0.5
    """Rendered pixels with at least this coverage are baked from (their colour divided by
    the coverage; the official bake uses every non-black pixel of the premultiplied render)."""
    splat: SplatConfig = field(default_factory=SplatConfig)
    normal_mask_threshold: int = 230
    """A stage-1 pixel shows the subject when any channel of its normal map is below this."""

    @classmethod
    def for_device(cls, device: str | torch.device) -> ExportConfig:
        """The settings ``export_textured_mesh`` uses when given no config.

        On a GPU these are the official export's counts (1000 visibility views
        at 1024 px, 95 Gaussian views at 1024 px, 1000 bake steps), which take
        a few seconds there.  On a CPU, which serves tests and small fixtures,
        the same steps run with fewer and smaller views and fewer bake steps
        (96 visibility views at 192 px, 8 Gaussian views at 256 px, 100 steps
        from the projected initialisation): seconds instead of hours for
        a small mesh, at a coarser visibility estimate and a noisier texture.
        """
        if torch.device(device).type == "cuda":
            return cls()
        return cls(
            hole_fill=HoleFillConfig(num_views=96, resolution=192),
            bake=BakeConfig(steps=100),
            gaussian_views=8,
            gaussian_resolution=256,
        )


def _as_float_image(image: Image.Image, device: torch.device) -> torch.Tensor:
    array = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0  # (H, W, 3)
    return torch.from_numpy(array).to(device)


def stage1_observations(views: MultiviewOutput, config: ExportConfig, device: torch.device) -> list[Observation]:
    """The five stored stage-1 views with their foreground masks (views 2 and 3 mirrored as stored)."""
    observations = []
    for index, (color, normal) in enumerate(zip(views.colors, views.normals)):
        if color.width != color.height:
            raise ValueError(f"view {index} is not square: {color.size}")
        camera = canonical_cameras(color.width)[index]
        normal_u8 = torch.from_numpy(np.array(normal.convert("RGB").resize(color.size))).to(device)
        mask = (normal_u8 < config.normal_mask_threshold).any(dim=-1)  # (H, W)
        observations.append(Observation(camera=camera, image=_as_float_image(color, device), mask=mask))
    return observations


def gaussian_observations(gaussians: Gaussians, config: ExportConfig, device: torch.device) -> list[Observation]:
    """Renders of the Gaussians from ``config.gaussian_views`` cameras on a sphere of radius 2."""
    tensors = GaussianTensors.from_gaussians(gaussians, device)
    observations = []
    for camera in sphere_cameras(config.gaussian_views, config.gaussian_resolution, fov_degrees=config.gaussian_fov_degrees):
        image, alpha = render_gaussians(tensors, camera, config=config.splat)
        mask = alpha >= config.gaussian_alpha_threshold
        # Renders are premultiplied on black: divide by coverage to get the surface colour.
        image = (image / alpha.clamp(min=1e-6).unsqueeze(-1)).clamp(0.0, 1.0)
        observations.append(Observation(camera=camera, image=image, mask=mask))
    return observations


def _one_copy(cleaned: TriangleMesh, unwrapped: TriangleMesh, sources: np.ndarray) -> np.ndarray:
    """(V,) index of one unwrapped copy of each cleaned vertex (the nearest unwrapped
    vertex for the rare vertex no face uses, which the unwrapping drops)."""
    copy = np.full(len(cleaned.vertices), -1, dtype=np.int64)
    copy[sources] = np.arange(len(sources))
    missing = np.nonzero(copy < 0)[0]
    if len(missing):
        copy[missing] = cKDTree(unwrapped.vertices).query(cleaned.vertices[missing])[1]
    return copy


@export_thread_limit()
def export_textured_mesh(
    mesh: TriangleMesh,
    views: MultiviewOutput,
    *,
    gaussians: Gaussians | None = None,
    texture_size: int = 1024,
    simplify: float = 0.7,
    bake_steps: int | None = None,
    callback: ProgressCallback | None = None,
    device: str = "cpu",
    config: ExportConfig | None = None,
    cpu_timings: dict[str, float] | None = None,
) -> MeshOutput:
    """Simplify, clean, unwrap and texture ``mesh``; return the GLB and PLY.

    ``mesh`` is in the official z-up frame.  ``bake_steps`` overrides the
    number of texture optimisation steps (official: 1000).  Without ``config``,
    ``ExportConfig.for_device(device)`` chooses the view counts and step count.  ``callback("export",
    step, total)`` is called as the export begins and after each phase (step 0), then after each
    bake step, and may raise to cancel.
    ``cpu_timings``, if given, receives the CPU seconds (all threads) of every
    phase and sub-phase ``MeshOutput.timings`` lists.  It runs on the process's
    export threads (``pipelines.export.threads``).
    """
    config = config or ExportConfig.for_device(device)
    bake_config = config.bake if bake_steps is None else replace(config.bake, steps=bake_steps)
    torch_device = torch.device(device)
    timings: dict[str, float] = {}
    clock = PhaseClock(torch_device, timings, cpu_timings)

    def phase_done() -> None:  # the export has begun (a worker switches the job's stage now); may raise to cancel
        if callback is not None:
            callback("export", 0, bake_config.steps)

    phase_done()
    simplified = simplify_mesh(mesh, simplify) if simplify > 0 else mesh
    clock.lap("simplify")
    phase_done()
    cleaned = simplified
    if config.hole_fill is not None:
        cleaned = remove_inner_faces(
            simplified, config.hole_fill, device=torch_device, timings=timings, cpu_timings=cpu_timings
        )
    clock.lap("holes")
    phase_done()
    unwrapped, uvs, sources = unwrap_uv(cleaned, resolution=texture_size, return_sources=True)
    clock.lap("uv")
    phase_done()
    observations = stage1_observations(views, config, torch_device)
    if gaussians is not None and config.gaussian_views > 0:
        observations += gaussian_observations(gaussians, config, torch_device)
    clock.lap("observe")
    texture = bake_texture(
        unwrapped.vertices,
        unwrapped.faces,
        uvs,
        observations,
        texture_size,
        config=bake_config,
        callback=callback,
        device=torch_device,
        timings=timings,
        cpu_timings=cpu_timings,
    )
    clock.lap("bake")

    glb = glb_bytes(unwrapped, uvs, Image.fromarray(texture), groups=sources)
    # PLY: the cleaned mesh (no seam duplicates), coloured from the texture.
    texel = np.clip((np.stack([uvs[:, 0], 1.0 - uvs[:, 1]], 1) * texture_size).astype(np.int64), 0, texture_size - 1)
    unwrapped_colors = texture[texel[:, 1], texel[:, 0]].astype(np.float32) / 255.0  # (V', 3)
    ply = ply_bytes(TriangleMesh(cleaned.vertices, cleaned.faces, unwrapped_colors[_one_copy(cleaned, unwrapped, sources)]))
    clock.lap("encode")
    return MeshOutput(
        glb=glb,
        mesh_ply=ply,
        num_vertices=len(unwrapped.vertices),
        num_faces=len(unwrapped.faces),
        timings=timings,
    )
