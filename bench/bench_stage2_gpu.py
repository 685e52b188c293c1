"""Time SyncHuman stage 2 on a GPU: SLAT flow (25 steps, guidance interval) and both decoders.

Random weights at the published sizes (``make_random_weights_stage2``), a
person-shaped occupancy of about 28 k cells, random DINOv2 inputs of the right
shapes.  Prints seconds and peak allocated VRAM per part and in total.

With ``--pipeline DIR`` it also writes the random checkpoint folder to DIR (about
3 GB), loads it through ``SyncHumanStage2Pipeline.from_pretrained`` (strict
keys at the published sizes) with a random DINOv2 ViT-L/14, and times
``decode`` end to end (conditioning, 25 flow steps, both decoders, mesh).
Usage: ``python -m bench.bench_stage2_gpu [--dtype float16] [--pipeline /tmp/SecondStage]``.
"""

from __future__ import annotations

import argparse
import time

import torch

from bench.make_random_weights_stage2 import build_models
from bench.person_occupancy import person_coords
from pipelines.synchuman.sparse.tensor import SparseVoxels
from pipelines.synchuman.stage2.sampler import GuidanceIntervalSamplerConfig, sample_guidance_interval


def timed(label: str, fn, results: dict) -> object:
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    out = fn()
    torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated() / 2**30
    results[label] = (seconds, peak)
    print(f"{label:<28s} {seconds:8.3f} s   peak {peak:6.2f} GiB", flush=True)
    return out


@torch.no_grad()
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dtype", default="float16", choices=["float16", "bfloat16", "float32"])
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--pipeline", type=str, default=None, help="also time decode() from a written checkpoint here")
    args = parser.parse_args()
    device = torch.device("cuda")
    dtype = getattr(torch, args.dtype)
    flow, gs, mesh = build_models()
    for model in (flow, gs, mesh):
        model.convert_torso(dtype)
        model.to(device).eval().requires_grad_(False)
    coords = torch.from_numpy(person_coords()).to(device)
    print(f"device {torch.cuda.get_device_name()}  torch {torch.__version__}  torso {args.dtype}  cells {coords.shape[0]}")
    gen = torch.Generator(device="cpu").manual_seed(0)
    cond = torch.randn(1, 1374, 1024, generator=gen).to(device)
    mv_color = torch.randn(1, 4, 64, 64, 4096, generator=gen).to(device)
    mv_normal = torch.randn(1, 4, 64, 64, 4096, generator=gen).to(device)
    noise = SparseVoxels(coords, torch.randn(coords.shape[0], 8, generator=gen).to(device))
    config = GuidanceIntervalSamplerConfig(steps=args.steps)

    def flow_run(steps: int):
        cfg = GuidanceIntervalSamplerConfig(steps=steps)
        return sample_guidance_interval(flow, SparseVoxels(coords, noise.feats), cond, torch.zeros_like(cond), cfg)

    warm: dict = {}
    timed("warm-up flow (2 steps)", lambda: flow_run(2), warm)
    slat = SparseVoxels(coords, torch.randn(coords.shape[0], 8, generator=gen).to(device))
    timed("warm-up gaussian decoder", lambda: gs(SparseVoxels(coords, slat.feats), mv_color, mv_normal), warm)
    timed("warm-up mesh decoder", lambda: mesh(SparseVoxels(coords, slat.feats), mv_color, mv_normal), warm)

    results: dict = {}
    torch.cuda.reset_peak_memory_stats()
    feats = timed(f"flow ({config.steps} steps, cfg)", lambda: flow_run(config.steps), results)
    slat = SparseVoxels(coords, feats)
    params = timed("gaussian decoder", lambda: gs(SparseVoxels(coords, slat.feats), mv_color, mv_normal), results)
    fine = timed("mesh decoder network", lambda: mesh.raw_output(SparseVoxels(coords, slat.feats), mv_color, mv_normal), results)
    from pipelines.synchuman.stage2.mesh_extraction import extract_mesh

    extraction = timed("flexicubes extraction", lambda: extract_mesh(fine.coords[:, 1:], fine.feats), results)
    total = sum(s for s, _ in results.values())
    peak = max(p for _, p in results.values())
    print(f"gaussians {params._xyz.shape[0]}  fine cells {fine.coords.shape[0]}  "
          f"mesh vertices {extraction.vertices.shape[0]} faces {extraction.faces.shape[0]}")
    print(f"TOTAL flow + decoders        {total:8.3f} s   peak {peak:6.2f} GiB  (target <= 6 s, <= 12 GB)")
    if args.pipeline:
        del flow, gs, mesh, params, fine, extraction, mv_color, mv_normal
        torch.cuda.empty_cache()
        bench_pipeline(args.pipeline, coords.cpu().numpy())


def bench_pipeline(folder: str, coords) -> None:
    """Write, load and run the whole stage-2 decode on synthetic views."""
    import numpy as np
    from PIL import Image, ImageDraw

    from bench.make_random_weights_stage2 import write_second_stage
    from pipelines.base import MultiviewOutput
    from pipelines.synchuman.dinov2 import DinoV2
    from pipelines.synchuman.stage2.pipeline import SyncHumanStage2Pipeline

    start = time.perf_counter()
    write_second_stage(folder)
    print(f"wrote random SecondStage in {time.perf_counter() - start:.1f} s", flush=True)
    torch.manual_seed(0)
    dinov2 = DinoV2()
    for name, param in dinov2.named_parameters():
        torch.nn.init.normal_(param, std=0.02)
    start = time.perf_counter()
    pipe = SyncHumanStage2Pipeline.from_pretrained(folder, dinov2=dinov2, device="cuda")
    print(f"from_pretrained {time.perf_counter() - start:.1f} s", flush=True)
    source = Image.new("RGBA", (512, 768), (0, 0, 0, 0))
    ImageDraw.Draw(source).ellipse((156, 40, 356, 730), fill=(200, 150, 120, 255))
    rng = np.random.default_rng(0)
    views = [Image.fromarray(rng.integers(0, 255, (768, 768, 3), dtype=np.uint8)) for _ in range(10)]
    mv = MultiviewOutput(source=source, input_image=source, colors=views[:5], normals=views[5:], coords=coords)
    results: dict = {}
    timed("decode warm-up", lambda: pipe.decode(mv, generator=torch.Generator().manual_seed(0)), results)
    decoded = timed("decode (end to end)", lambda: pipe.decode(mv, generator=torch.Generator().manual_seed(0)), results)
    print("decode timings", {k: round(v, 3) for k, v in decoded.timings.items()})
    print(f"mesh {decoded.mesh.vertices.shape[0]} vertices {decoded.mesh.faces.shape[0]} faces, "
          f"{decoded.gaussians.xyz.shape[0]} gaussians")


if __name__ == "__main__":
    main()
