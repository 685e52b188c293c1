"""Time one SyncHuman stage-1 job (768^2, 50 steps) on a GPU and report peak memory.

    python -m bench.bench_stage1_gpu --weights /tmp/synchuman-random [--make-weights] \
        [--dtype float16] [--steps 50] [--variants base,compile] [--profile] [--breakdown]

With ``--make-weights`` missing weights are first written at the published
sizes with random values (``bench/make_random_weights.py``).  The input is a
synthetic RGBA figure unless ``--image`` is given.  One short warm-up job runs
first; the timed job then reports seconds per phase, ms per sampling step and
``torch.cuda.max_memory_allocated`` / ``max_memory_reserved`` (GiB), with the
SM clock and power draw during the job (``bench/gpu_clocks.py``).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from bench.gpu_clocks import ClockMonitor
from pipelines.synchuman.stage1 import SyncHumanStage1Pipeline
from pipelines.synchuman.stage1.pipeline import warm_up_figure

GIB = 2**30
DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}


def run_job(pipe: SyncHumanStage1Pipeline, image: Image.Image, steps: int, seed: int) -> dict:
    torch.cuda.synchronize()
    with ClockMonitor() as clocks:
        start = time.perf_counter()
        out = pipe(image, generator=torch.Generator().manual_seed(seed), num_inference_steps=steps)
        torch.cuda.synchronize()
        total_s = time.perf_counter() - start
    latents = out.extras["multiview_latents"]
    return {
        "total_s": total_s,
        **{f"{k}_s": v for k, v in out.timings.items()},
        "ms_per_step": 1000 * out.timings["sampling"] / steps,
        "voxels": int(len(out.coords)),
        "finite": bool(torch.isfinite(latents).all()),
        "latent_abs_max": float(latents.abs().max()),
        **clocks.summary(),
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
        "base, cudnn, flash (SDPA preference), cl (channels-last), graph (CUDA graph), chunkN (VAE decodes "
        "N views at a time), bench (cuDNN autotuning), compile (the network and the VAE decoder), "
        "autotune (compile with max-autotune); compiled variants last",
    )
    parser.add_argument("--profile", action="store_true", help="print a kernel profile of 2 steps after each configuration")
    parser.add_argument("--breakdown", action="store_true", help="print GPU time per module kind of 2 eager steps")
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
    image = Image.open(args.image).convert("RGBA") if args.image else warm_up_figure()
    for variant in args.variants.split(","):
        options = set(variant.split("+"))
        attention = next((a for a in ("cudnn", "flash", "efficient") if a in options), "default")
        pipe.set_attention_backend(attention)
        pipe.set_channels_last("cl" in options)
        pipe.set_cuda_graph("graph" in options)
        chunk = next((int(o[5:]) for o in options if o.startswith("chunk") and o[5:].isdigit()), args.decode_chunk)
        pipe.vae_decode_chunk = chunk
        torch.backends.cudnn.benchmark = "bench" in options
        if "compile" in options:
            pipe.compile()
        if "autotune" in options:
            pipe.compile("max-autotune-no-cudagraphs")
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
            decode_chunk=chunk,
            steps=args.steps,
            load_s=load_s,
            warmup_s=warm["total_s"],
            weights_gib=weights_gib,
            peak_allocated_gib=torch.cuda.max_memory_allocated() / GIB,
            peak_reserved_gib=torch.cuda.max_memory_reserved() / GIB,
        )
        print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in result.items()}), flush=True)
        if args.profile:
            profile_steps(pipe, image)
        if args.breakdown and variant == args.variants.split(",")[0]:  # eager, before any compilation
            module_breakdown(pipe, image)


KERNEL_KINDS = (
    ("fused (triton)", ("triton",)),  # first: Inductor names its kernels after the ops they fuse ("..._convolution_...")
    ("attention", ("sdpa", "fmha", "flash", "attention")),
    ("convolution", ("fprop", "conv", "implicit", "dgrad", "winograd")),
    ("matmul", ("gemm", "nvjet", "cutlass", "cublas")),
)


def kernel_kind(name: str) -> str:
    lowered = name.lower()
    for kind, marks in KERNEL_KINDS:
        if any(mark in lowered for mark in marks):
            return kind
    return "other"


def profile_steps(pipe: SyncHumanStage1Pipeline, image: Image.Image, steps: int = 2) -> None:
    """GPU kernel time against wall time for sampling steps as configured, by kernel kind and costliest."""
    from collections import Counter

    from torch.profiler import ProfilerActivity, profile

    conditions, _ = pipe.encode_conditions(image)
    noise = pipe.draw_noise(torch.Generator().manual_seed(0))
    pipe.sample(conditions, noise, num_inference_steps=1)  # capture / compile outside the profile
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        start = time.perf_counter()
        pipe.sample(conditions, noise, num_inference_steps=steps)
        torch.cuda.synchronize()
        wall = time.perf_counter() - start
    kernels = [e for e in prof.key_averages() if e.device_type.name == "CUDA"]
    kernel_us = sum(e.self_device_time_total for e in kernels)
    kinds: Counter[str] = Counter()
    for event in kernels:
        kinds[kernel_kind(event.key)] += event.self_device_time_total
    print(f"profile: {steps} steps wall {wall * 1000 / steps:.1f} ms/step (profiled), "
          f"GPU kernels {kernel_us / 1000 / steps:.1f} ms/step")
    for kind, us in kinds.most_common():
        print(f"  {kind:16s} {us / 1000 / steps:7.1f} ms/step")
    for event in sorted(kernels, key=lambda e: -e.self_device_time_total)[:12]:
        print(f"  {event.self_device_time_total / 1000 / steps:7.2f} ms/step {event.count // steps:5d}x  {event.key[:90]}")


def module_breakdown(pipe: SyncHumanStage1Pipeline, image: Image.Image, steps: int = 2) -> None:
    """GPU milliseconds per step spent inside each kind of module (CUDA events around every call).

    Kinds nest (a transformer's total includes its attentions), so the rows do not add up.
    """
    from collections import defaultdict

    totals: dict[str, list] = defaultdict(list)
    kinds = (
        "ResnetBlock2D", "MultiviewTransformer2D", "JointDomainAttention", "RowwiseMultiviewAttention",
        "FeedForward", "GroupNorm", "LayerNorm", "Downsample2D", "Upsample2D", "ModulatedCrossBlock",
        "ImageToVoxelSync", "VoxelToImageSync", "Linear", "Conv2d", "CrossSpaceDenoiser", "Attention",
        "SelfAttention", "CrossAttention",
    )
    handles = []
    for name, module in pipe.denoiser.named_modules():
        kind = type(module).__name__
        if kind not in kinds:
            continue
        if kind == "Attention":
            kind = "Attention(text)"
        level = ""
        if name.startswith(("down_blocks.", "up_blocks.")):
            level = "/" + ".".join(name.split(".")[:2])
        elif name.startswith("mid_block"):
            level = "/mid"
        label = kind + level if kind in ("ResnetBlock2D", "MultiviewTransformer2D") else kind

        def pre(mod, args, label=label):
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            mod._bench_start = event

        def post(mod, args, output, label=label):
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            totals[label].append((mod._bench_start, event))

        handles += [module.register_forward_pre_hook(pre), module.register_forward_hook(post)]
    pipe.set_cuda_graph(False)
    conditions, _ = pipe.encode_conditions(image)
    noise = pipe.draw_noise(torch.Generator().manual_seed(0))
    pipe.sample(conditions, noise, num_inference_steps=steps)
    torch.cuda.synchronize()
    for handle in handles:
        handle.remove()
    rows = sorted(
        ((label, sum(a.elapsed_time(b) for a, b in pairs) / steps, len(pairs) // steps) for label, pairs in totals.items()),
        key=lambda row: -row[1],
    )
    print("breakdown (GPU ms per step, calls per step):")
    for label, ms, calls in rows:
        print(f"  {label:40s} {ms:8.2f} ms  {calls:4d}")


if __name__ == "__main__":
    np.set_printoptions(precision=4)
    main()
