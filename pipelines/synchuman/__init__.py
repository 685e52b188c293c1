"""SyncHuman (arXiv 2510.07723) as our own code, loading the official checkpoints unchanged.

``stage1/`` is the 2D-3D cross-space diffusion (five views, normals, 64^3
occupancy); ``stage2/`` the structured-latent flow and the Gaussian and mesh
decoders; ``sparse/`` the sparse-voxel tensor ops both need; ``dinov2.py`` the
image encoder both condition on (shared by the two stages when they run in
float32; stage 2 keeps its own float32 copy otherwise, as the official code does).

A weights directory holds the official release as downloaded, in either of
these layouts (``ckpts/`` is how the release itself nests them)::

    {weights}/OneStage/              or  {weights}/ckpts/OneStage/
    {weights}/SecondStage/           or  {weights}/ckpts/SecondStage/
    {weights}/dinov2/*.pth           DINOv2 ViT-L/14 with registers, torch.hub state dict

The fixed prompt embeddings (``normal_embeds.pt``, ``clr_embeds.pt``) are read
from ``OneStage/fixed_prompt_embeds_7view/`` or ``prompt_embeds/`` inside or
beside the OneStage folder.  Nothing is ever downloaded.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from pipelines.base import GenerationPipelines

VERSION = "1.0"
DTYPES = {"float32": "float32", "fp32": "float32", "float16": "float16", "fp16": "float16",
          "bfloat16": "bfloat16", "bf16": "bfloat16"}


def weights_layout(weights_dir: Path) -> tuple[Path, Path, Path]:
    """(OneStage dir, SecondStage dir, DINOv2 .pth) inside ``weights_dir``; FileNotFoundError naming what is missing."""
    weights_dir = Path(weights_dir)
    root = weights_dir / "ckpts" if (weights_dir / "ckpts" / "OneStage").is_dir() else weights_dir
    one, two = root / "OneStage", root / "SecondStage"
    dinov2_files = sorted((weights_dir / "dinov2").glob("*.pth")) if (weights_dir / "dinov2").is_dir() else []
    missing = [str(p) for p in (one, two) if not p.is_dir()]
    if not dinov2_files:
        missing.append(str(weights_dir / "dinov2" / "dinov2_vitl14_reg4_pretrain.pth"))
    if missing:
        raise FileNotFoundError("SyncHuman weights directory is incomplete; missing: " + ", ".join(missing))
    return one, two, dinov2_files[0]


def load_synchuman(
    weights_dir: Path,
    *,
    device: str = "cpu",
    dtype: str | None = None,
    compile: bool = False,
    compile_cache_dir: Path | None = None,
) -> GenerationPipelines:
    """Both stages from the official checkpoints, on ``device``, sharing one DINOv2.

    ``dtype`` (``float16``, ``bfloat16``, ``float32``) sets the networks'
    precision; the default is float16 on CUDA (as the official model runs) and
    float32 on the CPU.  ``compile`` (CUDA only) compiles the stage-1 network
    and runs a one-step warm-up job now, so the first real job does not pay
    for compilation; with ``compile_cache_dir`` it is compiled ahead of time
    into packages kept there, loaded in seconds on later starts.

    Every file of both stages is checked before anything is loaded, so an
    incomplete folder fails at once, naming all that is missing.  Stage 2 loads
    on a second thread while stage 1 compiles and warms up (the two overlap:
    one is file reads and copies, the other mostly Python tracing and kernel
    compilation).  ``load_timings`` of the result says how long each phase took.
    """
    import torch

    from pipelines.synchuman.stage1.pipeline import SyncHumanStage1Pipeline, missing_weight_files
    from pipelines.synchuman.stage2.checkpoint import missing_weight_files as missing_stage2_files
    from pipelines.synchuman.stage2.pipeline import SyncHumanStage2Pipeline

    one, two, dinov2 = weights_layout(weights_dir)
    missing = missing_weight_files(one, dinov2) + missing_stage2_files(two)
    if missing:
        raise FileNotFoundError("SyncHuman weights directory is incomplete; missing: " + ", ".join(missing))
    on_cuda = torch.device(device).type == "cuda"
    if dtype is None:
        dtype = "float16" if on_cuda else "float32"
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; choose one of {', '.join(sorted(set(DTYPES.values())))}")
    torch_dtype = getattr(torch, DTYPES[dtype])
    timings: dict[str, float] = {}
    started = time.perf_counter()
    stage1 = SyncHumanStage1Pipeline.from_pretrained(one, dinov2=dinov2, device=device, dtype=torch_dtype)
    timings["stage1_weights"] = round(time.perf_counter() - started, 2)
    # The official stage 2 runs DINOv2 in float32 even where stage 1 runs it in
    # float16: share the stage-1 encoder only when it already is float32.
    shared_dinov2 = stage1.dinov2 if torch_dtype == torch.float32 else dinov2
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="stage2-load") as pool:
        stage2_future = pool.submit(
            _timed_load, SyncHumanStage2Pipeline.from_pretrained, two, dinov2=shared_dinov2, device=device,
            dtype=torch_dtype,
        )
        if compile and on_cuda:
            mark = time.perf_counter()
            stage1.compile(cache_dir=compile_cache_dir)
            stage1.warm_up()
            timings["stage1_compile_warm_up"] = round(time.perf_counter() - mark, 2)
            timings.update(stage1.compile_timings)
        stage2, timings["stage2_weights"] = stage2_future.result()
    timings["total"] = round(time.perf_counter() - started, 2)
    return GenerationPipelines(
        name="synchuman",
        version=VERSION,
        description="SyncHuman (arXiv 2510.07723): 2D-3D cross-space diffusion, then structured-latent "
        "flow with Gaussian and FlexiCubes mesh decoders, from the official checkpoints.",
        stage1=stage1,
        stage2=stage2,
        device=str(device),
        load_timings=timings,
    )


def _timed_load(load, *args, **kwargs):
    """``(load(*args, **kwargs), seconds)``."""
    started = time.perf_counter()
    result = load(*args, **kwargs)
    return result, round(time.perf_counter() - started, 2)
