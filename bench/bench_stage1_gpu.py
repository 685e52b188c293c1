"""Time one SyncHuman stage-1 job (768^2, 50 steps) on a GPU and report peak memory.

    python -m bench.bench_stage1_gpu --weights /tmp/synchuman-random [--make-weights] \
        [--dtype float16] [--steps 50] [--attention cudnn] [--compile]

With ``--make-weights`` missing weights are first written at the published
sizes with random values (``bench/make_random_weights.py``).  The input is a
synthetic RGBA figure unless ``--image`` is given.  One short warm-up job runs
first; the timed job then reports seconds per phase, ms per sampling step and
``torch.cuda.max_memory_allocated`` / ``max_memory_reserved`` (GiB).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from pipelines.synchuman.stage1 import SyncHumanStage1Pipeline

GIB = 2**30
DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}


def synthetic_person(size: tuple[int, int] = (576, 768)) -> Image.Image:
    """A standing figure (head, torso, legs) on a transparent background."""
    image = Image.new("RGBA", size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    w, h = size
    draw.ellipse((w * 0.4, h * 0.03, w * 0.6, h * 0.2), fill=(224, 180, 150, 255))
    draw.rectangle((w * 0.3, h * 0.2, w * 0.7, h * 0.55), fill=(40, 90, 160, 255))
    draw.rectangle((w * 0.33, h * 0.55, w * 0.48, h * 0.97), fill=(50, 50, 60, 255))
    draw.rectangle((w * 0.52, h * 0.55, w * 0.67, h * 0.97), fill=(50, 50, 60, 255))
    return image


def run_job(pipe: SyncHumanStage1Pipeline, image: Image.Image, steps: int, seed: int) -> dict:
    torch.cuda.synchronize()
    start = time.perf_counter()
    out = pipe(image, generator=torch.Generator().manual_seed(seed), num_inference_steps=steps)
    torch.cuda.synchronize()
    latents = out.extras["multiview_latents"]
    return {
        "total_s": time.perf_counter() - start,
        **{f"{k}_s": v for k, v in out.timings.items()},
        "ms_per_step": 1000 * out.timings["sampling"] / steps,
        "voxels": int(len(out.coords)),
        "finite": bool(torch.isfinite(latents).all()),
        "latent_abs_max": float(latents.abs().max()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=Path, required=True, help="folder with OneStage/ and dinov2/")
    parser.add_argument("--make-weights", action="store_true", help="write random weights if missing")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="float16")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument(
        "--variants", default="base",
        help="comma-separated configurations timed in turn, each a '+'-joined set of: "
        "base, cudnn, flash (SDPA preference), cl (channels-last), graph (CUDA graph), chunk1 (VAE decodes "
        "one view at a time), compile (last only)",
    )
    parser.add_argument("--profile", action="store_true", help="print a kernel profile of 2 eager steps")
    parser.add_argument("--decode-chunk", type=int, default=2)
    parser.add_argument("--image", type=Path)
    args = parser.parse_args()

    dinov2 = args.weights / "dinov2" / "dinov2_vitl14_reg4_pretrain.pth"
    if args.make_weights and not (args.weights / "OneStage" / "pipeline_config.json").is_file():
        from bench.make_random_weights import write_dinov2, write_onestage

        start = time.perf_counter()
        write_onestage(args.weights / "OneStage", device="cuda")
        write_dinov2(dinov2, device="cuda")
        torch.cuda.empty_cache()
        print(f"random weights written in {time.perf_counter() - start:.1f} s")

    start = time.perf_counter()
    pipe = SyncHumanStage1Pipeline.from_pretrained(
        args.weights / "OneStage", dinov2=dinov2, device="cuda", dtype=DTYPES[args.dtype],
        vae_decode_chunk=args.decode_chunk,
    )
    load_s = time.perf_counter() - start
    weights_gib = torch.cuda.memory_allocated() / GIB
    image = Image.open(args.image).convert("RGBA") if args.image else synthetic_person()
    for variant in args.variants.split(","):
        options = set(variant.split("+"))
        attention = next((a for a in ("cudnn", "flash", "efficient") if a in options), "default")
        pipe.set_attention_backend(attention)
        pipe.set_channels_last("cl" in options)
        pipe.set_cuda_graph("graph" in options)
        pipe.vae_decode_chunk = 1 if "chunk1" in options else args.decode_chunk
        if "compile" in options:
            pipe.compile_blocks()
        try:
            warm = run_job(pipe, image, steps=2, seed=0)
            torch.cuda.empty_cache()  # so that the reserved peak is this job's, not earlier caching
            torch.cuda.reset_peak_memory_stats()
            result = run_job(pipe, image, steps=args.steps, seed=43)
        except Exception as error:  # report and go on with the next configuration
            print(json.dumps({"variant": variant, "error": repr(error)[:500]}), flush=True)
            continue
        result.update(
            variant=variant,
            graph_active=pipe._graphed is not None,
            device=torch.cuda.get_device_name(),
            torch=torch.__version__,
            dtype=args.dtype,
            decode_chunk=args.decode_chunk,
            steps=args.steps,
            load_s=load_s,
            warmup_s=warm["total_s"],
            weights_gib=weights_gib,
            peak_allocated_gib=torch.cuda.max_memory_allocated() / GIB,
            peak_reserved_gib=torch.cuda.max_memory_reserved() / GIB,
        )
        print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in result.items()}), flush=True)
        if args.profile and variant == args.variants.split(",")[0]:
            profile_steps(pipe, image)  # after the first (warm) configuration, before any compilation


def profile_steps(pipe: SyncHumanStage1Pipeline, image: Image.Image, steps: int = 2) -> None:
    """GPU kernel time against wall time for eager sampling steps, and the costliest kernels."""
    from torch.profiler import ProfilerActivity, profile

    pipe.set_attention_backend("default")
    pipe.set_channels_last(False)
    pipe.set_cuda_graph(False)
    conditions, _ = pipe.encode_conditions(image)
    noise = pipe.draw_noise(torch.Generator().manual_seed(0))
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        start = time.perf_counter()
        pipe.sample(conditions, noise, num_inference_steps=steps)
        torch.cuda.synchronize()
        wall = time.perf_counter() - start
    events = prof.key_averages()
    kernel_us = sum(e.self_device_time_total for e in events if e.device_type.name == "CUDA")
    print(f"profile: {steps} steps wall {wall * 1000 / steps:.1f} ms/step (profiled), "
          f"GPU kernels {kernel_us / 1000 / steps:.1f} ms/step")
    print(events.table(sort_by="self_device_time_total", row_limit=15, max_name_column_width=60))


if __name__ == "__main__":
    np.set_printoptions(precision=4)
    main()
