"""One whole SyncHuman job on a GPU, the way a worker runs it: load, stage 1, stage 2 + export.

Timing does not depend on weight values, so full-size random weights in the
official layout (written by ``bench/make_random_weights*.py`` when the folder is
missing) stand in for the released checkpoints::

    python -m bench.bench_synchuman_gpu --photo person.png --out /tmp/job

Prints the load time (with stage 1 compiled and warmed up, as a worker does by
default, unless ``--no-compile``), then per job (the first one warms kernels up) the
seconds of each phase, the peak GPU memory (allocated and reserved) and the
size of the GLB.  The artifacts of the last job are written under ``--out``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from PIL import Image

from bench.person_occupancy import person_coords
from pipelines.artifacts import write_stage1, write_stage2
from pipelines.export.textured import export_textured_mesh
from pipelines.registry import load_pipelines


def ensure_weights(folder: Path) -> None:
    if (folder / "OneStage").is_dir() and (folder / "SecondStage").is_dir():
        return
    from bench.make_random_weights import write_dinov2, write_onestage
    from bench.make_random_weights_stage2 import write_second_stage

    started = time.perf_counter()
    write_onestage(folder / "OneStage", device="cuda")
    write_dinov2(folder / "dinov2" / "dinov2_vitl14_reg4_pretrain.pth", device="cuda")
    print(f"stage-1 weights written after {time.perf_counter() - started:.1f} s", flush=True)
    write_second_stage(folder / "SecondStage")
    print(f"wrote random full-size weights in {time.perf_counter() - started:.1f} s", flush=True)


def progress_printer(started: float):
    """A step callback that prints where the job is (first, last and every 10th step of each stage)."""

    def callback(stage: str, step: int, total: int) -> None:
        if step <= 1 or step == total or step % 10 == 0:
            print(f"  {time.perf_counter() - started:7.2f} s  {stage} {step}/{total}", flush=True)

    return callback


def run_job(pipes, photo: Image.Image, args: argparse.Namespace) -> dict:
    torch.cuda.reset_peak_memory_stats()
    timings: dict[str, float] = {}
    generator = torch.Generator(device="cpu").manual_seed(43)
    callback = progress_printer(time.perf_counter())

    def lap(name: str, started: float) -> float:
        torch.cuda.synchronize()
        now = time.perf_counter()
        timings[name] = round(now - started, 3)
        return now

    started = time.perf_counter()
    views = pipes.stage1(photo, generator=generator, callback=callback, num_inference_steps=args.stage1_steps)
    mark = lap("stage1", started)
    if args.person_occupancy:
        # Random stage-1 weights fill about half of the 64^3 grid (230 k cells); a
        # trained model outlines a person (20-40 k).  Stage 2's cost follows the
        # cell count, so time it on a person-shaped occupancy.
        views.coords = person_coords()
        print(f"  stage-1 occupancy replaced by a person-shaped one: {len(views.coords)} cells", flush=True)
    # What SyncHumanStage2Pipeline.__call__ does, split so each half is timed.
    decoded = pipes.stage2.decode(views, generator=generator, callback=callback, num_steps=args.stage2_steps)
    mark = lap("stage2", mark)
    print(f"  decoded: {len(decoded.mesh.vertices)} vertices, {len(decoded.mesh.faces)} faces, "
          f"{len(decoded.gaussians.xyz)} Gaussians", flush=True)
    mesh = export_textured_mesh(
        decoded.mesh, views, gaussians=decoded.gaussians, texture_size=args.texture_size,
        callback=callback, device="cuda",
    )
    lap("export", mark)
    timings["total"] = round(sum(timings.values()), 3)
    return {
        "timings_s": timings,
        "stage1_inner_s": {k: round(v, 3) for k, v in views.timings.items()},
        "stage2_inner_s": {k: round(v, 3) for k, v in decoded.timings.items()},
        "export_inner_s": {k: round(v, 3) for k, v in mesh.timings.items()},
        "peak_allocated_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2),
        "peak_reserved_gib": round(torch.cuda.max_memory_reserved() / 2**30, 2),
        "voxels": int(len(views.coords)),
        "faces": mesh.num_faces,
        "glb_mb": round(len(mesh.glb) / 1e6, 2),
        "_views": views,
        "_mesh": mesh,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photo", type=Path, required=True, help="an RGBA photo of a person")
    parser.add_argument("--weights", type=Path, default=Path("/tmp/synchuman-random"))
    parser.add_argument("--out", type=Path, default=Path("/tmp/synchuman-job"))
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--person-occupancy", action="store_true",
                        help="run stage 2 on a person-shaped occupancy instead of random stage 1's half-full grid")
    parser.add_argument("--stage1-steps", type=int, default=50)
    parser.add_argument("--stage2-steps", type=int, default=25)
    parser.add_argument("--texture-size", type=int, default=1024)
    parser.add_argument("--no-compile", action="store_true", help="keep stage 1 eager (no torch.compile warm-up)")
    args = parser.parse_args()

    ensure_weights(args.weights)
    started = time.perf_counter()
    pipes = load_pipelines("synchuman", weights_dir=args.weights, device="cuda", compile=not args.no_compile)
    torch.cuda.synchronize()
    print(f"load: {time.perf_counter() - started:.1f} s, "
          f"{torch.cuda.memory_allocated() / 2**30:.2f} GiB resident", flush=True)

    photo = Image.open(args.photo).convert("RGBA")
    result = {}
    for index in range(args.jobs):
        result = run_job(pipes, photo, args)
        printable = {k: v for k, v in result.items() if not k.startswith("_")}
        print(f"job {index + 1}: {json.dumps(printable)}", flush=True)
    write_stage1(result["_views"], args.out / "stage1")
    write_stage2(result["_mesh"], args.out / "stage2")
    print(f"artifacts of the last job in {args.out}")


if __name__ == "__main__":
    main()
