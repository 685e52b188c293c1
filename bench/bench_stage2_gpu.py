"""Time SyncHuman stage 2 on a GPU: SLAT flow (25 steps, guidance interval) and both decoders.

Random weights at the published sizes (``make_random_weights_stage2``), a
person-shaped occupancy of about 28 k cells, random DINOv2 inputs of the right
shapes.  Prints seconds and peak allocated VRAM per part and in total.
Usage: ``python bench/bench_stage2_gpu.py [--dtype float16]``.
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


if __name__ == "__main__":
    main()
