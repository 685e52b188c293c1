"""Time the GLB export on a GPU for a stage-2 sized mesh, phase by phase.

The subject is ``bench.export_subject``'s standing figure (marching cubes on
the capsules of ``bench.person_occupancy``, with a hidden inner shell), of
about ``--faces`` faces before simplification (the random stage-2 decoder's
mesh has 2.0 M; a trained one fewer), its five stage-1 views (768 px) and
about 300 k flat Gaussians on its surface.

The export then runs with the official settings (simplify 0.7, 1000 visibility
views at 1024 px, 95 Gaussian views at 1024 px, 1000 bake steps, texture 1024)
after a small warm-up export.  Prints a table of wall and CPU seconds per phase
(CPU: all threads of the process), peak allocated VRAM and the PSNR of the
baked texture against the known colours on texels facing a stored view.

Usage: ``python -m bench.bench_export_gpu [--faces 2000000] [--gaussians 300000] [--device cuda]``
(needs scikit-image for marching cubes).  On a machine without a GPU, the
CPU-bound phases (simplify, the cut of ``holes``, uv, encode) run at full size with
``--device cpu --visibility-views 16 --gaussians 100000 --gaussian-views 8
--gaussian-resolution 256 --bake-steps 50 --view-size 384`` (the renders and the
bake then run with CPU-sized counts).
"""

from __future__ import annotations

import argparse
import time

import torch

from bench.export_subject import grid_for_faces, person_mesh, print_phase_table, stage1_views, surface_gaussians, texture_psnr
from pipelines.export.holes import HoleFillConfig
from pipelines.export.textured import ExportConfig, export_textured_mesh


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--faces", type=int, default=2_000_000, help="faces of the subject before simplification")
    parser.add_argument("--gaussians", type=int, default=300_000)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--texture-size", type=int, default=1024)
    parser.add_argument("--bake-steps", type=int, default=None)
    parser.add_argument("--visibility-views", type=int, default=1000)
    parser.add_argument("--visibility-resolution", type=int, default=1024)
    parser.add_argument("--gaussian-views", type=int, default=95)
    parser.add_argument("--gaussian-resolution", type=int, default=1024)
    parser.add_argument("--view-size", type=int, default=768)
    args = parser.parse_args()
    device = torch.device(args.device)

    start = time.perf_counter()
    mesh = person_mesh(grid_for_faces(args.faces))
    views = stage1_views(mesh, args.view_size, device)
    gaussians = surface_gaussians(mesh, args.gaussians)
    print(f"subject: {len(mesh.vertices)} vertices, {len(mesh.faces)} faces, {args.gaussians} Gaussians "
          f"({time.perf_counter() - start:.1f} s to build)", flush=True)

    config = ExportConfig(
        hole_fill=HoleFillConfig(num_views=args.visibility_views, resolution=args.visibility_resolution),
        gaussian_views=args.gaussian_views,
        gaussian_resolution=args.gaussian_resolution,
    )
    if device.type == "cuda":
        # Warm-up: kernels, allocator and lazy imports, on a small configuration.
        small = ExportConfig(hole_fill=HoleFillConfig(num_views=16, resolution=256), gaussian_views=4)
        export_textured_mesh(mesh, views, gaussians=gaussians, texture_size=256, bake_steps=20, device=args.device, config=small)
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()

    steps: list[int] = []
    cpu_timings: dict[str, float] = {}
    start, start_cpu = time.perf_counter(), time.process_time()
    out = export_textured_mesh(
        mesh,
        views,
        gaussians=gaussians,
        texture_size=args.texture_size,
        bake_steps=args.bake_steps,
        callback=lambda stage, step, total: steps.append(step),
        device=args.device,
        config=config,
        cpu_timings=cpu_timings,
    )
    total, total_cpu = time.perf_counter() - start, time.process_time() - start_cpu
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else float("nan")
    print_phase_table(out.timings, cpu_timings, total, total_cpu)
    print(f"peak VRAM {peak:.2f} GiB", flush=True)
    print(f"output: {out.num_vertices} vertices, {out.num_faces} faces, GLB {len(out.glb) / 2**20:.1f} MiB, "
          f"PLY {len(out.mesh_ply) / 2**20:.1f} MiB, {len(steps)} bake steps", flush=True)
    print(f"texture PSNR on texels facing a side view: {texture_psnr(out.glb):.2f} dB", flush=True)


if __name__ == "__main__":
    main()
