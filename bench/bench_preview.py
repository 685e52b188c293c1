"""Benchmark of the preview pipeline on the CPU: seconds per photo, peak memory, GLB size.

Usage::

    python bench/bench_preview.py [PHOTO ...] [--repeat N] [--texture-size 1024]

Without photos it uses the sample photos of the shared folder beside the
checkout (``$SYNCHUMAN_SHARED_DIR/samples``, else ``../shared/samples``).  The first photo is run once
untimed to warm up (imports, OpenGL context); each photo is then run
``--repeat`` times and the median is printed.  Targets (a 2-core machine):
at most 3 s per 768 px photo for both stages, 1.5 GB peak RSS, a GLB of at
most 4 MB with a 1024 px texture.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

from PIL import Image

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from bench.process_stats import cpu_seconds, peak_rss_mb  # noqa: E402
from pipelines.preview import load_preview  # noqa: E402

TARGET_SECONDS = 3.0
TARGET_RSS_MB = 1536.0
TARGET_GLB_MB = 4.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("photos", nargs="*", type=Path)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--texture-size", type=int, default=1024)
    args = parser.parse_args(argv)
    shared = Path(os.environ.get("SYNCHUMAN_SHARED_DIR") or REPO_ROOT.parent / "shared")
    photos = args.photos or sorted((shared / "samples").glob("*.png"))
    if not photos:
        parser.error("no photos given and ../shared/samples is not available")

    pipelines = load_preview()
    warm = pipelines.stage1(Image.open(photos[0]))
    pipelines.stage2(warm, texture_size=args.texture_size)

    print(
        f"{'photo':<16}{'stage1 s':>10}{'stage2 s':>10}{'total s':>10}{'CPU s':>8}{'GLB MB':>9}{'faces':>8}"
        "  steps (median s)"
    )
    totals, cpus, sizes = [], [], []
    for path in photos:
        image = Image.open(path)
        image.load()
        runs = []
        for _ in range(args.repeat):
            c0, t0 = cpu_seconds(), time.perf_counter()
            views = pipelines.stage1(image)
            t1 = time.perf_counter()
            mesh = pipelines.stage2(views, texture_size=args.texture_size)
            t2, c2 = time.perf_counter(), cpu_seconds()
            runs.append((t1 - t0, t2 - t1, views.timings, mesh.timings, mesh, c2 - c0))
        s1 = statistics.median(r[0] for r in runs)
        s2 = statistics.median(r[1] for r in runs)
        steps = {
            name: statistics.median(r[2 + k][name] for r in runs)
            for k, stage_steps in enumerate((runs[0][2], runs[0][3]))
            for name in stage_steps
        }
        mesh = runs[-1][4]
        cpu = statistics.median(r[5] for r in runs)
        size_mb = len(mesh.glb) / 1e6
        totals.append(s1 + s2)
        cpus.append(cpu)
        sizes.append(size_mb)
        detail = " ".join(f"{name}={value:.2f}" for name, value in steps.items())
        print(
            f"{path.stem:<16}{s1:>10.2f}{s2:>10.2f}{s1 + s2:>10.2f}{cpu:>8.2f}{size_mb:>9.2f}{mesh.num_faces:>8}"
            f"  {detail}"
        )

    rss = peak_rss_mb()
    worst = max(totals)
    print()
    print(f"median total per photo: {statistics.median(totals):.2f} s (worst {worst:.2f} s; target <= {TARGET_SECONDS} s)")
    print(f"median CPU time per photo: {statistics.median(cpus):.2f} s, load average {os.getloadavg()[0]:.1f}")
    print(f"peak RSS: {rss:.0f} MB (target <= {TARGET_RSS_MB:.0f} MB)")
    print(f"largest GLB: {max(sizes):.2f} MB (target <= {TARGET_GLB_MB} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
