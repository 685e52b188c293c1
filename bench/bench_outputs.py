"""Benchmark of the outputs made beside the GLB: seconds each one adds to a job, on this machine.

Usage::

    python bench/bench_outputs.py [PHOTO ...] [--repeat N] [--texture-size 1024]

Without photos it uses the samples of ``$SYNCHUMAN_SHARED_DIR`` (default
``../shared``).
Each photo goes through the preview pipeline once (untimed) to get a GLB as a
job makes it; then each output is made ``--repeat`` times from that GLB and
the median wall-clock and CPU seconds are printed (CPU time counts every
thread of the process, OpenGL's and the encoders' included: on a busy
machine it is the steadier figure).  The first photo is run once untimed to
warm up (imports, OpenGL context).  Target: thumbnail + turntable at most 3 s
on the CPU.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

from PIL import Image

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from bench.bench_preview import cpu_seconds  # noqa: E402
from pipelines.outputs import model_outputs  # noqa: E402
from pipelines.outputs.model import TexturedModel, load_glb  # noqa: E402
from pipelines.outputs.obj import obj_zip_bytes  # noqa: E402
from pipelines.outputs.previews import thumbnail, turntable  # noqa: E402
from pipelines.outputs.render import ModelRenderer  # noqa: E402
from pipelines.outputs.usdz import usdz_bytes  # noqa: E402
from pipelines.preview import load_preview  # noqa: E402

TARGET_PREVIEWS_SECONDS = 3.0


def measure(make: Callable[[], object], repeat: int) -> tuple[float, float, object]:
    """Median wall and CPU seconds of ``make()``, and its last result."""
    walls, cpus, result = [], [], None
    for _ in range(repeat):
        c0, t0 = cpu_seconds(), time.perf_counter()
        result = make()
        walls.append(time.perf_counter() - t0)
        cpus.append(cpu_seconds() - c0)
    return statistics.median(walls), statistics.median(cpus), result


def outputs_of(model: TexturedModel, renderer: ModelRenderer) -> dict[str, Callable[[], object]]:
    return {
        "thumbnail": lambda: thumbnail(model, renderer),
        "turntable": lambda: turntable(model, renderer),
        "usdz": lambda: usdz_bytes(model),
        "obj": lambda: obj_zip_bytes(model),
    }


def size_mb(result: object) -> float:
    if isinstance(result, bytes):
        return len(result) / 1e6
    return (len(result.mp4) + len(result.webp)) / 1e6  # a Turntable


def sample_photos(given: list[Path]) -> list[Path]:
    """The photos given, else the samples of the shared folder beside the checkout."""
    if given:
        return given
    shared = Path(os.environ.get("SYNCHUMAN_SHARED_DIR") or REPO_ROOT.parent / "shared")
    return sorted((shared / "samples").glob("*.png"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("photos", nargs="*", type=Path, help="photos of people (default: the shared samples)")
    parser.add_argument("--texture-size", type=int, default=1024, help="of the GLBs the outputs start from")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each output; the median is printed")
    args = parser.parse_args(argv)
    photos = sample_photos(args.photos)
    if not photos:
        parser.error("no photos given and no shared samples found")

    pipelines = load_preview()
    renderer = ModelRenderer()
    glbs = {path.stem: pipelines.stage2(pipelines.stage1(Image.open(path)), texture_size=args.texture_size).glb for path in photos}
    model_outputs(next(iter(glbs.values())), ["usdz", "obj"])  # warm up: imports, OpenGL context

    names = ["load", "thumbnail", "turntable", "usdz", "obj"]
    print(f"{'photo':<16}" + "".join(f"{name + ' s':>14}" for name in names) + f"{'previews s':>14}")
    print(f"{'':<16}" + "".join(f"{'wall / CPU':>14}" for _ in names) + f"{'wall / CPU':>14}")
    previews_wall, previews_cpu, sizes = [], [], {}
    for stem, glb in glbs.items():
        load_wall, load_cpu, model = measure(lambda: load_glb(glb), args.repeat)
        row = {"load": (load_wall, load_cpu)}
        for name, make in outputs_of(model, renderer).items():
            wall, cpu, result = measure(make, args.repeat)
            row[name] = (wall, cpu)
            sizes.setdefault(name, []).append(size_mb(result))
        wall = row["load"][0] + row["thumbnail"][0] + row["turntable"][0]
        cpu = row["load"][1] + row["thumbnail"][1] + row["turntable"][1]
        previews_wall.append(wall)
        previews_cpu.append(cpu)
        cells = "".join(f"{w:>7.2f}/{c:<6.2f}" for w, c in row.values())
        print(f"{stem:<16}{cells}{wall:>7.2f}/{cpu:<6.2f}")

    print()
    print(
        f"thumbnail + turntable (with loading the GLB), median: {statistics.median(previews_wall):.2f} s wall, "
        f"{statistics.median(previews_cpu):.2f} s CPU (target <= {TARGET_PREVIEWS_SECONDS} s); "
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    )
    print("median sizes: " + ", ".join(f"{name} {statistics.median(mb):.2f} MB" for name, mb in sizes.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
