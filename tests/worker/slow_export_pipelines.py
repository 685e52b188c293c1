"""The preview pipelines with a stand-in slow export, for the export-overlap tests (never in the production list).

A worker loads them through the operator/testing hook
``SYNCHUMAN_WORKER__PIPELINE_FACTORY=tests.worker.slow_export_pipelines:load_preview_with_slow_export``.
Preprocessing, stage 1 and stage 2 are the real preview pipelines.  After stage 2
has made its mesh, an export phase stands in for the long CPU-bound export of a
GPU worker: ``EXPORT_STEPS`` steps of ``EXPORT_STEP_S`` each, on the process's
export threads (``pipelines.export.threads``), each step reported as
``callback("export", step, total)``, the way SyncHuman's export reports its bake
steps.  The worker's progress callback therefore moves the job to the ``export``
stage, and stops the run at the next step when the job is canceled or the worker
shuts down, exactly as in a real export.

``stage2_steps`` (ignored by the preview method) picks the export's length:

=======================  ==========================================================
``stage2_steps``         the stand-in export
=======================  ==========================================================
``LONG_EXPORT_STEPS``    ``LONG_EXPORT_STEP_COUNT`` steps (keeps a worker busy)
anything else            ``EXPORT_STEPS`` steps (about three seconds)
=======================  ==========================================================

The thread budget the export ran with is kept in the mesh's timings as
``export_threads`` (``stage2_steps`` of ``results_metadata.json`` in the zip).
"""

from __future__ import annotations

import time
from typing import Any

import torch

from pipelines.base import GenerationPipelines, MeshOutput, MultiviewOutput, ProgressCallback
from pipelines.export.threads import export_thread_limit
from pipelines.registry import load_pipelines

EXPORT_STEPS = 30
EXPORT_STEP_S = 0.1
"""A job's stand-in export: 30 steps of 0.1 s, a cancel check at each."""
LONG_EXPORT_STEPS = 97
LONG_EXPORT_STEP_COUNT = 600
"""About a minute: longer than any test waits for it (it is canceled)."""


class SlowExportStage2:
    """The preview stage 2, then a slow stand-in export reported step by step as ``export``."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def __call__(self, views: MultiviewOutput, *, generator: Any = None, callback: ProgressCallback | None = None,
                 num_steps: int = 25, cfg_strength: float = 5.0, texture_size: int = 1024,
                 simplify: float = 0.7) -> MeshOutput:
        mesh = self.inner(views, generator=generator, callback=callback, num_steps=num_steps,
                          cfg_strength=cfg_strength, texture_size=texture_size, simplify=simplify)
        steps = LONG_EXPORT_STEP_COUNT if num_steps == LONG_EXPORT_STEPS else EXPORT_STEPS
        started = time.perf_counter()
        with export_thread_limit():
            threads = torch.get_num_threads()  # the intra-op pool the export's tensor work would use
            for step in range(1, steps + 1):
                time.sleep(EXPORT_STEP_S)
                if callback is not None:
                    callback("export", step, steps)
        mesh.timings = {**mesh.timings, "slow_export": time.perf_counter() - started, "export_threads": float(threads)}
        return mesh


def load_preview_with_slow_export(device: str = "cpu", **_: object) -> GenerationPipelines:
    """The preview method whose stage 2 ends with the slow stand-in export."""
    pipelines = load_pipelines("preview", device=device)  # with its person cut-out, warm
    pipelines.stage2 = SlowExportStage2(pipelines.stage2)
    pipelines.description += " Test build: its export is a slow stand-in."
    return pipelines
