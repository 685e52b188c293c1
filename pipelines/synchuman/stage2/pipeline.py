"""SyncHuman stage 2: views, normals and occupancy -> Gaussians and a coloured mesh -> GLB.

Steps of :meth:`SyncHumanStage2Pipeline.decode`:

1. condition: DINOv2 tokens of the TRELLIS 518 crop of ``views.source``; multiview
   feature maps of the four body colour views and of their normal maps;
2. sample the structured latent on the stage-1 cells: seeded noise, Euler flow
   with guidance on an interval (``callback("stage2", step, total)`` per step),
   then the ``pipeline.json`` normalisation;
3. decode Gaussians and the FlexiCubes mesh.

``__call__`` then bakes and writes the textured GLB through the shared export.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipelines.base import MeshOutput, MultiviewOutput, PipelineInputError, ProgressCallback
from pipelines.geometry import Gaussians, TriangleMesh
from pipelines.synchuman.conditioning import trellis_condition, trellis_image
from pipelines.synchuman.dinov2 import DinoV2
from pipelines.synchuman.sparse.tensor import SparseVoxels
from pipelines.synchuman.stage2.checkpoint import build_and_load, model_folder, read_model_config, read_pipeline_config, to_device
from pipelines.synchuman.stage2.decoder_trunk import DecoderConfig
from pipelines.synchuman.stage2.flow_model import SLatFlowConfig, SLatFlowModel
from pipelines.synchuman.stage2.gaussian_decoder import GaussianParams, SLatGaussianDecoder
from pipelines.synchuman.stage2.mesh_decoder import SLatMeshDecoder
from pipelines.synchuman.stage2.mesh_extraction import MeshExtraction
from pipelines.synchuman.stage2.mv_features import multiview_features, views_to_tensor
from pipelines.synchuman.stage2.sampler import GuidanceIntervalSamplerConfig, sample_guidance_interval

STAGE = "stage2"


@dataclass
class Stage2Decoded:
    """What the networks produce before texture baking."""

    mesh: TriangleMesh
    """z-up official frame, vertex colours from the mesh decoder."""
    gaussians: Gaussians
    slat_coords: np.ndarray
    """(N, 4) int32 cells of the structured latent."""
    slat_feats: np.ndarray
    """(N, 8) float32 denormalised latent."""
    timings: dict[str, float] = field(default_factory=dict)


@dataclass
class Stage2Conditions:
    cond: torch.Tensor
    """(1, 1374, D) DINOv2 tokens of the source image; the negative is zeros."""
    mv_color: torch.Tensor
    """(1, 4, 64, 64, 4D) features of the colour views."""
    mv_normal: torch.Tensor
    """(1, 4, 64, 64, 4D) features of the normal views."""


class SyncHumanStage2Pipeline:
    """Structured-latent flow + Gaussian and mesh decoders, from the official ``SecondStage`` folder."""

    def __init__(
        self,
        flow: SLatFlowModel,
        gaussian_decoder: SLatGaussianDecoder,
        mesh_decoder: SLatMeshDecoder,
        dinov2: DinoV2,
        sampler: GuidanceIntervalSamplerConfig,
        latent_mean: torch.Tensor,
        latent_std: torch.Tensor,
        device: torch.device,
    ) -> None:
        self.flow = flow
        self.gaussian_decoder = gaussian_decoder
        self.mesh_decoder = mesh_decoder
        self.dinov2 = dinov2
        self.sampler = sampler
        self.latent_mean = latent_mean.to(device)
        self.latent_std = latent_std.to(device)
        self.device = device

    @classmethod
    def from_pretrained(
        cls,
        ckpt_dir: str | Path,
        *,
        dinov2: str | Path | DinoV2,
        device: str | torch.device = "cpu",
        dtype: torch.dtype | str | None = None,
    ) -> SyncHumanStage2Pipeline:
        """Load ``pipeline.json`` and the three model folders unchanged.

        ``dtype`` is the dtype of the transformer torsos (the reference runs them in
        float16 on CUDA, as ``use_fp16`` in their configs asks); input/output
        layers, norms, DINOv2 and FlexiCubes stay float32.  Default: float16 on
        CUDA where the config asks for it, else float32.
        """
        ckpt_dir = Path(ckpt_dir)
        device = torch.device(device)
        if isinstance(dtype, str):
            dtype = getattr(torch, dtype)
        args = read_pipeline_config(ckpt_dir)

        def torso_dtype(use_fp16: bool) -> torch.dtype:
            if dtype is not None:
                return dtype
            return torch.float16 if (use_fp16 and device.type == "cuda") else torch.float32

        folder = model_folder(ckpt_dir, args, "slat_flow_model")
        flow_config = SLatFlowConfig.from_args(read_model_config(folder)[1])
        flow = build_and_load(SLatFlowModel, flow_config, folder, device)
        flow.convert_torso(torso_dtype(flow_config.use_fp16))

        decoders = []
        for key, kind in (("slat_decoder_gs", SLatGaussianDecoder), ("slat_decoder_mesh", SLatMeshDecoder)):
            folder = model_folder(ckpt_dir, args, key)
            config = DecoderConfig.from_args(read_model_config(folder)[1])
            decoder = build_and_load(kind, config, folder, device)
            decoder.convert_torso(torso_dtype(config.use_fp16))
            decoders.append(to_device(decoder, device))

        if not isinstance(dinov2, DinoV2):
            dinov2 = DinoV2.from_pretrained(dinov2, device=device, dtype=torch.float32)
        norm = args["slat_normalization"]
        return cls(
            to_device(flow, device),
            decoders[0],
            decoders[1],
            to_device(dinov2, device),
            GuidanceIntervalSamplerConfig.from_pipeline(args["slat_sampler"]),
            torch.tensor(norm["mean"], dtype=torch.float32),
            torch.tensor(norm["std"], dtype=torch.float32),
            device,
        )

    # -- steps ------------------------------------------------------------------------------------

    @staticmethod
    def check_inputs(views: MultiviewOutput) -> None:
        if len(views.colors) < 4 or len(views.normals) < 4:
            raise PipelineInputError("invalid_views", "stage 2 needs the four body views and their normal maps")
        coords = np.asarray(views.coords)
        if coords.ndim != 2 or coords.shape[1] != 4 or coords.shape[0] == 0:
            raise PipelineInputError("empty_occupancy", "stage 2 needs a non-empty (N, 4) occupancy")
        if coords[:, 1:].min() < 0 or coords[:, 1:].max() > 63 or (coords[:, 0] != 0).any():
            raise PipelineInputError("invalid_occupancy", "occupancy rows must be [0, x, y, z] with x, y, z in [0, 64)")

    @torch.no_grad()
    def encode(self, views: MultiviewOutput) -> Stage2Conditions:
        """Step 1: the image condition and the multiview feature maps."""
        cond = trellis_condition(self.dinov2, [trellis_image(views.source)]).to(self.device)
        mv_color = multiview_features(self.dinov2, views_to_tensor(views.colors[:4]))
        mv_normal = multiview_features(self.dinov2, views_to_tensor(views.normals[:4]))
        return Stage2Conditions(cond, mv_color, mv_normal)

    @torch.no_grad()
    def sample_slat(
        self,
        coords: np.ndarray | torch.Tensor,
        cond: torch.Tensor,
        *,
        generator: torch.Generator | None = None,
        callback: ProgressCallback | None = None,
        num_steps: int | None = None,
        cfg_strength: float | None = None,
        noise: torch.Tensor | None = None,
    ) -> SparseVoxels:
        """Step 2: denormalised structured latent on ``coords`` (N, 4) rows ``[0, x, y, z]``.

        ``noise`` (N, 8) defaults to ``randn`` drawn from ``generator`` (on its device;
        the CPU generator reproduces the reference's seeded draw).
        """
        if not isinstance(coords, torch.Tensor):
            coords = torch.from_numpy(np.asarray(coords))
        coords = coords.to(self.device, torch.int32)
        if noise is None:
            gen_device = generator.device if generator is not None else torch.device("cpu")
            noise = torch.randn(coords.shape[0], self.flow.config.in_channels, generator=generator, device=gen_device)
        config = self.sampler
        if num_steps is not None:
            config = replace(config, steps=int(num_steps))
        if cfg_strength is not None:
            config = replace(config, cfg_strength=float(cfg_strength))

        def on_step(step: int, total: int) -> None:
            if callback is not None:
                callback(STAGE, step, total)

        x = SparseVoxels(coords, noise.to(self.device, torch.float32))
        feats = sample_guidance_interval(
            self.flow,
            x,
            cond.to(self.device),
            torch.zeros_like(cond).to(self.device),
            config,
            batch_guidance=self.device.type == "cuda",
            on_step=on_step,
        )
        return x.replace(feats * self.latent_std + self.latent_mean)

    @torch.no_grad()
    def decode_slat(self, slat: SparseVoxels, conditions: Stage2Conditions) -> tuple[GaussianParams, MeshExtraction]:
        """Step 3: Gaussians and the mesh from the latent and the multiview maps."""
        mv_color = conditions.mv_color.to(self.device)
        mv_normal = conditions.mv_normal.to(self.device)
        gaussians = self.gaussian_decoder(slat, mv_color, mv_normal)
        mesh = self.mesh_decoder(SparseVoxels(slat.coords, slat.feats), mv_color, mv_normal)
        return gaussians, mesh

    def decode(
        self,
        views: MultiviewOutput,
        *,
        generator: torch.Generator | None = None,
        callback: ProgressCallback | None = None,
        num_steps: int = 25,
        cfg_strength: float = 5.0,
        conditions: Stage2Conditions | None = None,
    ) -> Stage2Decoded:
        """Steps 1-3; see the module docstring.  ``conditions`` skips step 1 when already computed."""
        self.check_inputs(views)
        timings: dict[str, float] = {}
        start = time.perf_counter()
        if conditions is None:
            conditions = self.encode(views)
        timings["stage2_condition"] = time.perf_counter() - start

        start = time.perf_counter()
        slat = self.sample_slat(
            views.coords, conditions.cond, generator=generator, callback=callback, num_steps=num_steps, cfg_strength=cfg_strength
        )
        timings["stage2_flow"] = time.perf_counter() - start

        start = time.perf_counter()
        gaussian_params, extraction = self.decode_slat(slat, conditions)
        timings["stage2_decode"] = time.perf_counter() - start

        colors = None
        if extraction.vertex_attrs is not None:
            colors = extraction.vertex_attrs[:, :3].float().clamp(0, 1).cpu().numpy().astype(np.float32)
        mesh = TriangleMesh(
            vertices=extraction.vertices.float().cpu().numpy().astype(np.float32),
            faces=extraction.faces.cpu().numpy().astype(np.int64),
            vertex_colors=colors,
        )
        return Stage2Decoded(
            mesh=mesh,
            gaussians=gaussian_params.to_gaussians(),
            slat_coords=slat.coords.cpu().numpy(),
            slat_feats=slat.feats.float().cpu().numpy(),
            timings=timings,
        )

    def __call__(
        self,
        views: MultiviewOutput,
        *,
        generator: Any = None,
        callback: ProgressCallback | None = None,
        num_steps: int = 25,
        cfg_strength: float = 5.0,
        texture_size: int = 1024,
        simplify: float = 0.7,
    ) -> MeshOutput:
        """Decode, then bake the texture and write GLB + PLY."""
        from pipelines.export.textured import export_textured_mesh

        decoded = self.decode(views, generator=generator, callback=callback, num_steps=num_steps, cfg_strength=cfg_strength)
        output = export_textured_mesh(
            decoded.mesh,
            views,
            gaussians=decoded.gaussians,
            texture_size=texture_size,
            simplify=simplify,
            callback=callback,
            device=str(self.device),
        )
        output.timings = {**decoded.timings, **output.timings}
        return output
