"""Fault-injection pipelines for the fault tests (never in the production list).

A worker loads them through the operator/testing hook
``SYNCHUMAN_WORKER__PIPELINE_FACTORY=tests.hardening.fault_pipelines:load_fault_pipelines``.
They honour the pipeline contract and produce a tiny but valid result in a
fraction of a second, unless the job's ``stage1_steps`` option names a fault:

====================  =========================================================
``stage1_steps``      what stage 1 does
====================  =========================================================
``OOM_STEPS``         raises ``torch.cuda.OutOfMemoryError`` (as CUDA would)
``HANG_STEPS``        never returns (a stuck kernel; only a watchdog ends it)
``CRASH_STEPS``       kills its own process with SIGKILL (a segfault, say)
``SLOW_STEPS``        ``SLOW_STEP_COUNT`` steps of ``SLOW_STEP_S``, reporting each one
``LONG_STEPS``        the same with ``LONG_STEP_COUNT`` steps
``OVERRUN_STEPS``     the same with ``OVERRUN_STEP_COUNT`` steps (outlives the visibility timeout)
anything else         a few quick steps
====================  =========================================================

and stage 2 never returns when ``stage2_steps`` is ``STAGE2_HANG_STEPS`` (after
stage 1's files were published).
"""

from __future__ import annotations

import io
import os
import signal
import time

import numpy as np
from PIL import Image

from pipelines.base import GenerationPipelines, MeshOutput, MultiviewOutput

OOM_STEPS = 101
HANG_STEPS = 102
CRASH_STEPS = 103
SLOW_STEPS = 104
LONG_STEPS = 105
OVERRUN_STEPS = 106
STAGE2_HANG_STEPS = 99
SLOW_STEP_S = 0.1
SLOW_STEP_COUNT = 20
"""A slow job runs about two seconds, reporting progress (a checkpoint) every step."""
LONG_STEP_COUNT = 30
"""A long job runs about three seconds (under the fault tests' visibility timeout)."""
OVERRUN_STEP_COUNT = 80
"""An overrunning job runs about eight seconds (twice the fault tests' visibility timeout)."""
VIEW_SIDE = 64
"""Views are small: these pipelines test the service, not the model."""


def _glb_and_ply() -> tuple[bytes, bytes, int, int]:
    import trimesh

    box = trimesh.creation.box(extents=(0.4, 0.8, 0.2))
    glb = box.export(file_type="glb")
    ply = box.export(file_type="ply")
    return glb, ply, len(box.vertices), len(box.faces)


class FaultyStage1:
    def __init__(self, *, faults: bool = True) -> None:
        self.faults = faults

    def __call__(self, image, *, generator=None, callback=None, num_inference_steps=50, guidance_scale=3.0):
        if not self.faults:
            num_inference_steps = 3
        if num_inference_steps == OOM_STEPS:
            import torch

            # What the CUDA caching allocator raises when an allocation does not fit.
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        if num_inference_steps == HANG_STEPS:
            while True:
                time.sleep(3600)
        if num_inference_steps == CRASH_STEPS:
            os.kill(os.getpid(), signal.SIGKILL)
        total = {SLOW_STEPS: SLOW_STEP_COUNT, LONG_STEPS: LONG_STEP_COUNT, OVERRUN_STEPS: OVERRUN_STEP_COUNT}.get(
            num_inference_steps, 3
        )
        for step in range(1, total + 1):
            if total > 3:
                time.sleep(SLOW_STEP_S)
            if callback is not None:
                callback("stage1", step, total)
        rgba = image.convert("RGBA").resize((VIEW_SIDE, VIEW_SIDE))
        views = [Image.new("RGB", (VIEW_SIDE, VIEW_SIDE), (200, 180, 160)) for _ in range(5)]
        normals = [Image.new("RGB", (VIEW_SIDE, VIEW_SIDE), (128, 128, 255)) for _ in range(5)]
        coords = np.array([[0, 32, 32, z] for z in range(20, 44)], dtype=np.int32)  # (N, 4)
        return MultiviewOutput(source=image, input_image=rgba, colors=views, normals=normals, coords=coords)


class FaultyStage2:
    def __call__(self, views, *, generator=None, callback=None, num_steps=25, cfg_strength=5.0,
                 texture_size=1024, simplify=0.7):
        if num_steps == STAGE2_HANG_STEPS:
            while True:
                time.sleep(3600)
        for step in (1, 2):
            if callback is not None:
                callback("stage2", step, 2)
        glb, ply, vertices, faces = _glb_and_ply()
        return MeshOutput(glb=glb, mesh_ply=ply, num_vertices=vertices, num_faces=faces)


def keep_image(image: Image.Image) -> Image.Image:
    """The test pipelines' preprocessing: none (their inputs are shapes, not people)."""
    return image


def load_fault_pipelines(device: str = "cpu", **_: object) -> GenerationPipelines:
    return GenerationPipelines(
        name="fault-injection",
        version="test",
        description="Test pipelines that fail on request; not a model.",
        stage1=FaultyStage1(),
        stage2=FaultyStage2(),
        device=device,
        preprocess=keep_image,
    )


def load_quick_pipelines(device: str = "cpu", **_: object) -> GenerationPipelines:
    """The same tiny results, never a fault, whatever the options (for fuzzing)."""
    return GenerationPipelines(
        name="quick",
        version="test",
        description="Test pipelines that return a tiny result at once; not a model.",
        stage1=FaultyStage1(faults=False),
        stage2=FaultyStage2(),
        device=device,
        preprocess=keep_image,
    )


def tiny_person_png(side: int = 96) -> bytes:
    """An RGBA cut-out with a visible foreground (what the API accepts)."""
    image = Image.new("RGBA", (side, side), (0, 0, 0, 0))
    for y in range(side // 6, side - side // 6):
        for x in range(side // 3, side - side // 3):
            image.putpixel((x, y), (180, 140, 120, 255))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


SLOW_LOAD_S = 8.0
"""How long :func:`load_slowly` takes: longer than the service tests' heartbeat TTL (5 s)."""


def load_slowly(device: str = "cpu", **_: object) -> GenerationPipelines:
    """The quick pipelines after a load as long as a GPU worker's first start (scaled down)."""
    time.sleep(SLOW_LOAD_S)
    return load_quick_pipelines(device)
