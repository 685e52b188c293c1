"""SyncHuman stage 1: one RGBA photo -> 5 views x {colour, normal} at 768^2 + 64^3 occupancy.

``SyncHumanStage1Pipeline.from_pretrained(ckpt_dir, dinov2=...)`` reads the
official ``ckpts/OneStage`` folder unchanged (``pipeline_config.json`` and the
diffusers / transformers / TRELLIS subfolders) plus the DINOv2 hub weights
file; nothing is downloaded.  A call runs these steps:

1. preprocessing: the 768^2 body canvas and face close-up on white
   (:mod:`pipelines.preprocess`), the 518^2 TRELLIS crop;
2. conditions: CLIP image embeddings (+ the noise-level-0 embedding), VAE
   latents of the inputs, the fixed prompt embeddings, the DINOv2 tokens;
   the unconditional halves zero the image embeddings, image latents and
   DINOv2 tokens (the prompts stay);
3. noise, drawn in the official order (see :meth:`draw_noise`) unless given;
4. flow-matching Euler sampling of both latents with CFG (:mod:`sampler`);
5. VAE decoding of the 10 views in chunks, structure decoding to coords;
6. the official post-processing: the front colour view is replaced by the
   input, the face normal is pasted into the front normal's face box.

Batch layouts: 2D ``[normal_uncond x5, normal_cond x5, colour_uncond x5, colour_cond x5]``,
3D ``[uncond, cond]``.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL
from diffusers.models.embeddings import get_timestep_embedding
from PIL import Image, ImageDraw
from torch.nn.attention import SDPBackend, sdpa_kernel

from pipelines.base import VIEW_SIZE, MultiviewOutput, PipelineInputError, ProgressCallback
from pipelines.preprocess import FACE_BOX, multiview_inputs, on_white
from pipelines.synchuman.aot_package import AotNetwork
from pipelines.synchuman.conditioning import trellis_condition, trellis_image
from pipelines.synchuman.dinov2 import DinoV2
from pipelines.synchuman.stage1.cuda_graph import GraphedDenoiser
from pipelines.synchuman.stage1.denoiser import CrossSpaceDenoiser
from pipelines.synchuman.stage1.sampler import euler_step, flow_timesteps, guide
from pipelines.synchuman.stage1.structure_decoder import StructureDecoder, occupied_coords

try:  # transformers >= 5 names the Pillow backend explicitly
    from transformers import CLIPImageProcessorPil as CLIPImageProcessor
except ImportError:  # pragma: no cover - older transformers
    from transformers import CLIPImageProcessor
from transformers import CLIPVisionModelWithProjection

PROMPT_VIEWS = (0, 2, 3, 4, 6)
"""Rows of the 7-view prompt files used: front, right, back, left, face."""
PROMPT_FILES = ("normal_embeds.pt", "clr_embeds.pt")
PROMPT_DIRS = ("fixed_prompt_embeds_7view", "prompt_embeds")
"""Where the prompt files are looked for: these folders in ``ckpt_dir``, then beside it."""
RESCALE_T = 3.0
STAGE = "stage1"
logger = logging.getLogger(__name__)
ATTENTION_BACKENDS = {
    "default": None,
    "cudnn": [SDPBackend.CUDNN_ATTENTION, SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH],
    "flash": [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH],
    "efficient": [SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH],
}
"""Fused-attention kernel preferences for :meth:`SyncHumanStage1Pipeline.set_attention_backend`."""

REQUIRED_FILES = {
    "pipeline config": ["pipeline_config.json"],
    "cross-space network": [
        "SyncHuman_2D3DCrossSpaceDiffusion/config.json",
        "SyncHuman_2D3DCrossSpaceDiffusion/diffusion_pytorch_model.safetensors",
    ],
    "VAE": ["vae/config.json", "vae/diffusion_pytorch_model.safetensors|vae/diffusion_pytorch_model.bin"],
    "CLIP image encoder": ["image_encoder/config.json", "image_encoder/model.safetensors|image_encoder/pytorch_model.bin"],
    "CLIP feature extractor": ["feature_extractor/preprocessor_config.json"],
    "structure decoder": ["sparse_structure_decoder/config.json", "sparse_structure_decoder/model.safetensors"],
}


@dataclass
class Stage1Noise:
    """The initial noise of one run (injected for reproducibility tests)."""

    multiview: torch.Tensor
    """[2V, 4, h, w] float32: the normal views then the colour views."""
    structure: torch.Tensor
    """[1, 8, R, R, R] float32: the structure latent."""


@dataclass
class Stage1Conditions:
    """Everything the sampler needs besides noise, already in CFG batch layout."""

    prompt_embeds: torch.Tensor  # [4V, 77, 1024]
    class_labels: torch.Tensor  # [4V, 2P]
    image_latents: torch.Tensor  # [4V, 4, h, w]
    trellis_cond: torch.Tensor  # [2, 1374, D]
    views: torch.Tensor  # [V, 3, 768, 768] float32 input views on white (body x4, face)


def _missing_files(ckpt_dir: Path, prompt_dir: Path | None, dinov2: Path) -> list[str]:
    missing = []
    for alternatives in (f for files in REQUIRED_FILES.values() for f in files):
        options = alternatives.split("|")
        if not any((ckpt_dir / name).is_file() for name in options):
            missing.append(str(ckpt_dir / options[0]))
    for name in PROMPT_FILES:
        if prompt_dir is None or not (prompt_dir / name).is_file():
            missing.append(str((prompt_dir or ckpt_dir / PROMPT_DIRS[0]) / name))
    if not dinov2.is_file():
        missing.append(str(dinov2))
    return missing


def missing_weight_files(ckpt_dir: Path, dinov2: Path) -> list[str]:
    """Every file the OneStage folder, its prompt embeddings and DINOv2 lack (nothing is loaded)."""
    return _missing_files(Path(ckpt_dir), find_prompt_dir(Path(ckpt_dir)), Path(dinov2))


def find_prompt_dir(ckpt_dir: Path) -> Path | None:
    for base in (ckpt_dir, ckpt_dir.parent):
        for name in PROMPT_DIRS:
            if all((base / name / f).is_file() for f in PROMPT_FILES):
                return base / name
    return None


def load_prompt_embeds(prompt_dir: Path) -> torch.Tensor:
    """[2V, 77, 1024] float16: the normal prompts of the 5 views, then the colour ones."""
    normal, colour = (torch.load(prompt_dir / name, map_location="cpu", weights_only=True) for name in PROMPT_FILES)
    return torch.cat([normal[list(PROMPT_VIEWS)], colour[list(PROMPT_VIEWS)]], dim=0)


def to_uint8_truncated(images: torch.Tensor) -> list[Image.Image]:
    """[B, 3, H, W] in [0, 1] -> PIL images via ``x*255`` truncated (torchvision ``to_pil_image``)."""
    pixels = images.mul(255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    return [Image.fromarray(p) for p in pixels]


def to_pil_rounded(image: torch.Tensor) -> Image.Image:
    """[3, H, W] in [0, 1] -> PIL RGB with ``x*255 + 0.5`` truncated (torchvision ``save_image``)."""
    pixels = image.float().mul(255).add(0.5).clamp(0, 255).to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(pixels)


def warm_up_figure(size: tuple[int, int] = (576, 768)) -> Image.Image:
    """A standing figure (head, torso, legs) on a transparent background: warm-up and benchmark input."""
    image = Image.new("RGBA", size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    w, h = size
    draw.ellipse((w * 0.4, h * 0.03, w * 0.6, h * 0.2), fill=(224, 180, 150, 255))
    draw.rectangle((w * 0.3, h * 0.2, w * 0.7, h * 0.55), fill=(40, 90, 160, 255))
    draw.rectangle((w * 0.33, h * 0.55, w * 0.48, h * 0.97), fill=(50, 50, 60, 255))
    draw.rectangle((w * 0.52, h * 0.55, w * 0.67, h * 0.97), fill=(50, 50, 60, 255))
    return image


class VaeDecode(torch.nn.Module):
    """The VAE's latent-to-image half as one module: [n, 4, h, w] latents -> [n, 3, 8h, 8w] images."""

    def __init__(self, vae: AutoencoderKL) -> None:
        super().__init__()
        self.vae = vae

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        return self.vae.decode(latents).sample


class SyncHumanStage1Pipeline:
    """The official OneStage model as a stage-1 pipeline (see module docstring)."""

    def __init__(
        self,
        *,
        denoiser: CrossSpaceDenoiser,
        vae: AutoencoderKL,
        image_encoder: CLIPVisionModelWithProjection,
        feature_extractor: CLIPImageProcessor,
        structure_decoder: StructureDecoder,
        dinov2: DinoV2,
        prompt_embeds: torch.Tensor,
        num_views: int = 5,
        vae_decode_chunk: int = 2,
    ) -> None:
        self.denoiser = denoiser
        self.vae = vae
        self.image_encoder = image_encoder
        self.feature_extractor = feature_extractor
        self.structure_decoder = structure_decoder
        self.dinov2 = dinov2
        self.prompt_embeds = prompt_embeds
        self.num_views = num_views
        self.vae_decode_chunk = vae_decode_chunk
        self.device = denoiser.conv_in.weight.device
        self.dtype = denoiser.dtype
        self._sdpa_backends: list[SDPBackend] | None = None
        self._graphed: GraphedDenoiser | None = None
        self._vae_decode = VaeDecode(vae)
        self._compiled = False
        self._compile_mode: str | None = None
        self._aot_cache_dir: Path | None = None
        self._networks: dict[str, AotNetwork] = {}
        self.compile_timings: dict[str, float] = {}
        """Seconds each compiled network took to build or load at :meth:`warm_up`."""

    def set_cuda_graph(self, enabled: bool) -> None:
        """Replay the network as a captured CUDA graph during sampling (CUDA only).

        Measured on an H100 (float16): 238 vs 241 ms per step (the run is GPU-bound)
        while the graph's private memory pool keeps ~4 GiB more reserved.
        """
        if enabled and self.device.type != "cuda":
            raise ValueError("CUDA graphs need the pipeline on a CUDA device")
        self._graphed = GraphedDenoiser(self.denoiser) if enabled else None

    def set_channels_last(self, enabled: bool) -> None:
        """Keep the UNet's feature maps channels-last (a GPU tuning option).

        Measured on an H100 (float16, eager): 259 vs 241 ms per step, so off by default.
        """
        self.denoiser.use_channels_last(enabled)
        if self._graphed is not None:
            self._graphed = GraphedDenoiser(self.denoiser)

    def set_attention_backend(self, name: str) -> None:
        """Prefer one SDPA kernel family ("cudnn", "flash", "efficient") or torch's "default" choice."""
        if name not in ATTENTION_BACKENDS:
            raise ValueError(f"unknown attention backend {name!r}; choose from {sorted(ATTENTION_BACKENDS)}")
        self._sdpa_backends = ATTENTION_BACKENDS[name]

    def compile(self, mode: str | None = None, *, cache_dir: Path | None = None) -> None:
        """Compile the cross-space network and the VAE decoder (a GPU option).

        Each becomes one graph whose norms, activations and copies are fused;
        the decoder also runs channels-last.  On an H100 (float16) this takes
        sampling from 11.9 to 9.0 s and the decode of the 10 views from 0.63 to
        0.27-0.37 s.  Compilation happens at :meth:`warm_up` (or the first job);
        calling again is a no-op.

        With ``cache_dir`` both are compiled ahead of time into AOTInductor
        packages kept there (:mod:`pipelines.synchuman.aot_package`): minutes
        the first time, seconds to load on every later start.  Without it,
        or where a network cannot be exported, ``torch.compile`` compiles them
        in each process (Inductor's own cache shortens later starts).
        """
        if self._compiled:
            return
        self.vae.decoder.to(memory_format=torch.channels_last)  # the encoder (conditions) is faster as it is
        self._compile_mode = mode
        self._aot_cache_dir = cache_dir
        if cache_dir is None:
            self._compile_just_in_time()
        self._compiled = True

    def _compile_just_in_time(self) -> None:
        """``torch.compile`` both networks; Dynamo traces them on their next call."""
        import torch._dynamo

        torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, 64)
        self.denoiser.compile(dynamic=False, mode=self._compile_mode)
        self._vae_decode.compile(dynamic=False, mode=self._compile_mode)
        self._aot_cache_dir = None

    def _compile_ahead_of_time(self) -> dict[str, float]:
        """Load (or build) both networks' packages for the shapes of a warm-up job."""
        from pipelines.synchuman.aot_package import load_or_build, recorded_inputs

        with recorded_inputs(self.denoiser) as denoiser_calls, recorded_inputs(self._vae_decode) as decode_calls:
            self._warm_up_job()  # eager: records the exact inputs a job passes
        timings = {}
        for name, module, calls in (
            ("stage1-denoiser", self.denoiser, denoiser_calls),
            ("stage1-vae-decoder", self._vae_decode, decode_calls),
        ):
            network = load_or_build(module, calls[0], self._aot_cache_dir, name)
            self._networks[name] = network
            timings[name + ("_built" if network.built else "_loaded")] = network.seconds
        return timings

    def warm_up(self) -> float:
        """Run a one-step job on a synthetic figure: compilation, cuDNN/cuBLAS plans and the
        allocator's pools are set up now rather than in the first real job.  Returns seconds."""
        start = time.perf_counter()
        if self._aot_cache_dir is not None and not self._networks:
            try:
                self.compile_timings = self._compile_ahead_of_time()
            except Exception:
                logger.warning("ahead-of-time compilation failed; compiling just in time instead", exc_info=True)
                self._networks.clear()
                self._compile_just_in_time()
        self._warm_up_job()
        return time.perf_counter() - start

    def _warm_up_job(self) -> None:
        self(warm_up_figure(), generator=torch.Generator().manual_seed(0), num_inference_steps=1)

    @contextmanager
    def _attention_kernels(self) -> Iterator[None]:
        if self._sdpa_backends is None:
            yield
        else:
            with sdpa_kernel(self._sdpa_backends, set_priority=True):
                yield

    # -- loading -------------------------------------------------------------------------------------

    @classmethod
    def from_pretrained(
        cls,
        ckpt_dir: str | Path,
        *,
        dinov2: str | Path,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        prompt_dir: str | Path | None = None,
        vae_decode_chunk: int = 2,
    ) -> SyncHumanStage1Pipeline:
        """Load the official OneStage folder and the DINOv2 hub ``.pth`` file (offline, strict).

        ``dtype`` applies to the networks (the structure decoder stays float32).
        The prompt files (``normal_embeds.pt``, ``clr_embeds.pt``) are read from
        ``prompt_dir``, else from ``fixed_prompt_embeds_7view/`` or ``prompt_embeds/``
        inside ``ckpt_dir`` or beside it.  The unused text encoder is not loaded.
        ``vae_decode_chunk`` is how many views the VAE decodes at once.  For the
        fastest GPU configuration measured (H100, float16: 50 steps in 9.0 s
        instead of 11.9 s, 8.8 GiB reserved) call :meth:`compile` then
        :meth:`warm_up` (about 3 minutes of compilation the first time, about 20 s
        with Inductor's on-disk cache warm); the worker does so by default.
        """
        ckpt_dir, dinov2_path = Path(ckpt_dir), Path(dinov2)
        prompts = Path(prompt_dir) if prompt_dir is not None else find_prompt_dir(ckpt_dir)
        missing = _missing_files(ckpt_dir, prompts, dinov2_path)
        if missing:
            raise FileNotFoundError("SyncHuman stage-1 weights are incomplete; missing: " + ", ".join(missing))
        config = json.loads((ckpt_dir / "pipeline_config.json").read_text())
        device = torch.device(device)
        denoiser = CrossSpaceDenoiser.from_pretrained(
            ckpt_dir / "SyncHuman_2D3DCrossSpaceDiffusion", device=device, dtype=dtype
        )
        vae = AutoencoderKL.from_pretrained(
            ckpt_dir / "vae", torch_dtype=dtype, local_files_only=True, low_cpu_mem_usage=False
        )
        image_encoder = CLIPVisionModelWithProjection.from_pretrained(
            ckpt_dir / "image_encoder", torch_dtype=dtype, local_files_only=True
        )
        feature_extractor = CLIPImageProcessor.from_pretrained(ckpt_dir / "feature_extractor", local_files_only=True)
        structure_decoder = StructureDecoder.from_pretrained(ckpt_dir / "sparse_structure_decoder", device=device)
        return cls(
            denoiser=denoiser,
            vae=vae.to(device).eval(),
            image_encoder=image_encoder.to(device).eval(),
            feature_extractor=feature_extractor,
            structure_decoder=structure_decoder,
            dinov2=DinoV2.from_pretrained(dinov2_path, device=device, dtype=dtype),
            prompt_embeds=load_prompt_embeds(prompts),
            num_views=config.get("num_views", 5),
            vae_decode_chunk=vae_decode_chunk,
        )

    # -- step 1-2: inputs and conditions --------------------------------------------------------------

    def check_inputs(self, image: Image.Image, num_inference_steps: int, guidance_scale: float) -> None:
        if not isinstance(image, Image.Image):
            raise PipelineInputError("invalid_image", "stage 1 takes a PIL image")
        if image.mode != "RGBA":
            raise PipelineInputError("invalid_image", "stage 1 needs an RGBA image (alpha marks the person)")
        alpha = np.asarray(image.getchannel("A"))
        if alpha.min() == 255:
            raise PipelineInputError("invalid_image", "the image has no transparent background to find the person")
        if not isinstance(num_inference_steps, int) or num_inference_steps < 1:
            raise ValueError(f"num_inference_steps must be a positive integer, got {num_inference_steps!r}")
        if not np.isfinite(guidance_scale):
            raise ValueError(f"guidance_scale must be finite, got {guidance_scale!r}")

    @torch.no_grad()
    def encode_conditions(self, image: Image.Image) -> tuple[Stage1Conditions, Image.Image]:
        """Steps 1-2: the CFG-layout conditions and the 768^2 body canvas (RGBA)."""
        trellis = trellis_image(image)  # first: it rejects images without an opaque person cheaply
        inputs = multiview_inputs(image)
        body, face = (torch.from_numpy(on_white(im)).permute(2, 0, 1) for im in (inputs.body, inputs.face))
        distinct = torch.stack([body, face])  # [2, 3, 768, 768] float32 on white
        index = [0] * (self.num_views - 1) + [1]  # body x4, face
        pil = to_uint8_truncated(distinct)

        pixel_values = self.feature_extractor(images=pil, return_tensors="pt").pixel_values
        embeds = self.image_encoder(pixel_values.to(self.device, self.image_encoder.dtype)).image_embeds.float()
        noise_level = get_timestep_embedding(
            torch.zeros(len(pil), device=self.device), embeds.shape[-1], flip_sin_to_cos=True, downscale_freq_shift=0
        )
        embeds = torch.cat([embeds, noise_level], dim=1)[index]  # [V, 2P]

        vae_in = torch.from_numpy(np.stack([np.asarray(p) for p in pil])).permute(0, 3, 1, 2).contiguous()
        vae_in = (vae_in.float() / 255 * 2 - 1).to(self.device, self.vae.dtype)  # [2, 3, 768, 768]
        latents = self.vae.encode(vae_in).latent_dist.mode().float() * self.vae.config.scaling_factor
        latents = latents[index]  # [V, 4, h, w]

        cond = trellis_condition(self.dinov2, [trellis])  # [1, 1374, D]

        prompts = self.prompt_embeds.to(self.device)
        normal_prompts, colour_prompts = prompts.chunk(2)
        conditions = Stage1Conditions(
            prompt_embeds=torch.cat([normal_prompts, normal_prompts, colour_prompts, colour_prompts]),
            class_labels=torch.cat([torch.zeros_like(embeds), embeds] * 2),
            image_latents=torch.cat([torch.zeros_like(latents), latents] * 2),
            trellis_cond=torch.cat([torch.zeros_like(cond), cond]),
            views=distinct[index],
        )
        return conditions, inputs.body

    # -- step 3: noise ---------------------------------------------------------------------------------

    def draw_noise(self, generator: torch.Generator | None = None) -> Stage1Noise:
        """Standard-normal noise on the CPU, in the official draw order.

        The official code first draws an unused [2V, P] tensor (the unCLIP
        image-noise it never applies), then the multiview latents, then the
        structure latent; the same order here makes ``torch.manual_seed(s)`` (or
        a CPU generator seeded with s) give the official noise for seed s.
        """
        c = self.denoiser.config
        v = 2 * self.num_views
        projection = self.image_encoder.config.projection_dim
        h = c.sample_size
        torch.randn((v, projection), generator=generator)
        multiview = torch.randn((v, c.out_channels, h, h), generator=generator)
        structure = torch.randn((1, c.trellis_in_channels, *[c.resolution] * 3), generator=generator)
        return Stage1Noise(multiview=multiview, structure=structure)

    # -- step 4: sampling ------------------------------------------------------------------------------

    @torch.no_grad()
    def sample(
        self,
        conditions: Stage1Conditions,
        noise: Stage1Noise,
        *,
        num_inference_steps: int = 50,
        guidance_scale: float = 3.0,
        callback: ProgressCallback | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Euler-integrate both latents from t=1 to 0: -> (multiview [2V,4,h,w], structure [1,8,R,R,R])."""
        latents = noise.multiview.to(self.device, torch.float32)
        structure = noise.structure.to(self.device, torch.float32)
        steps = flow_timesteps(num_inference_steps, RESCALE_T)
        model = self._graphed or self.denoiser
        for i, (t, t_next) in enumerate(steps):
            normal, colour = latents.chunk(2)
            model_in = torch.cat([normal, normal, colour, colour])  # [4V, 4, h, w]
            model_in = torch.cat([model_in, conditions.image_latents], dim=1)  # [4V, 8, h, w]
            v_2d, v_3d = self._predict(
                model,
                model_in,
                torch.tensor([1000 * t], device=self.device, dtype=torch.float64),
                conditions.prompt_embeds,
                conditions.class_labels,
                torch.cat([structure, structure]),
                torch.tensor([1000 * t], device=self.device, dtype=torch.float32),
                conditions.trellis_cond,
            )
            normal_u, normal_c, colour_u, colour_c = v_2d.float().chunk(4)
            v_2d = guide(torch.cat([normal_u, colour_u]), torch.cat([normal_c, colour_c]), guidance_scale)
            v_3d_u, v_3d_c = v_3d.float().chunk(2)
            latents = euler_step(latents, v_2d, t, t_next)
            structure = euler_step(structure, guide(v_3d_u, v_3d_c, guidance_scale), t, t_next)
            if callback is not None:
                callback(STAGE, i + 1, num_inference_steps)
        return latents, structure

    def _predict(self, model, *args: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One network call; a CUDA graph that cannot be captured falls back to eager calls."""
        if model is self._graphed:
            try:
                return model(*args)
            except RuntimeError as error:
                logger.warning("CUDA graph capture failed (%s); running the network eagerly", error)
                self._graphed = None
                torch.cuda.synchronize(self.device)
        network = self._networks.get("stage1-denoiser", self.denoiser)
        return network(*args)

    # -- step 5: decoding ------------------------------------------------------------------------------

    @torch.no_grad()
    def decode_views(self, latents: torch.Tensor) -> torch.Tensor:
        """[2V, 4, h, w] latents -> raw VAE output [2V, 3, H, W] in about [-1, 1], decoded in chunks."""
        scaled = latents / self.vae.config.scaling_factor
        chunk = max(1, self.vae_decode_chunk)
        decode = self._networks.get("stage1-vae-decoder", self._vae_decode)
        images = [decode(part.to(self.vae.dtype)).float().cpu() for part in scaled.split(chunk)]
        return torch.cat(images)

    @torch.no_grad()
    def decode_structure(self, structure: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """[1, 8, R, R, R] -> (logits [1, 1, 64, 64, 64], coords [N, 4] int32)."""
        logits = self.structure_decoder(structure)
        return logits, occupied_coords(logits)

    # -- step 6: post-processing -----------------------------------------------------------------------

    def postprocess(self, decoded: torch.Tensor, views: torch.Tensor) -> tuple[list[Image.Image], list[Image.Image]]:
        """Raw decoded [2V, 3, H, W] -> (colours, normals) as PIL, with the official overrides."""
        images = (decoded / 2 + 0.5).clamp(0, 1)
        normals, colours = images[: self.num_views].clone(), images[self.num_views :].clone()
        colours[0] = views[0]
        left, top, right, bottom = (v * decoded.shape[-1] // VIEW_SIZE for v in FACE_BOX)
        face = F.interpolate(normals[-1:], size=(bottom - top, right - left), mode="bilinear", align_corners=False)
        normals[0][:, top:bottom, left:right] = face[0]
        return [to_pil_rounded(c) for c in colours], [to_pil_rounded(n) for n in normals]

    # -- the whole run ---------------------------------------------------------------------------------

    def __call__(
        self,
        image: Image.Image,
        *,
        generator: torch.Generator | None = None,
        callback: ProgressCallback | None = None,
        num_inference_steps: int = 50,
        guidance_scale: float = 3.0,
        latents: Stage1Noise | None = None,
    ) -> MultiviewOutput:
        """Run stage 1 on an RGBA person image.

        ``generator``: a CPU ``torch.Generator`` for the noise (None: the global
        RNG); ``latents``: initial noise to use instead.  ``extras`` of the
        output holds the final ``multiview_latents`` and ``structure_latent``.
        """
        self.check_inputs(image, num_inference_steps, guidance_scale)
        timings: dict[str, float] = {}
        with _timed(timings, "conditions", self.device):
            conditions, canvas = self.encode_conditions(image)
        noise = latents if latents is not None else self.draw_noise(generator)
        with _timed(timings, "sampling", self.device), self._attention_kernels():
            final, structure = self.sample(
                conditions, noise, num_inference_steps=num_inference_steps,
                guidance_scale=guidance_scale, callback=callback,
            )
        with _timed(timings, "decode", self.device), self._attention_kernels():
            decoded = self.decode_views(final)
            _, coords = self.decode_structure(structure)
            colours, normals = self.postprocess(decoded, conditions.views)
        return MultiviewOutput(
            source=image,
            input_image=canvas,
            colors=colours,
            normals=normals,
            coords=coords.cpu().numpy().astype(np.int32),
            timings=timings,
            extras={"multiview_latents": final.cpu(), "structure_latent": structure.cpu()},
        )


@contextmanager
def _timed(timings: dict[str, float], name: str, device: torch.device) -> Iterator[None]:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    yield
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    timings[name] = time.perf_counter() - start
