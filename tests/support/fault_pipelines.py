"""Fault-injection pipelines for the fault tests (never in the production list).

A worker loads them through the operator/testing hook
``SYNCHUMAN_WORKER__PIPELINE_FACTORY=tests.support.fault_pipelines:load_fault_pipelines``.
They are the quick stand-in pipelines of ``bench.quick_pipelines`` (a tiny but
valid result in a fraction of a second), unless the job's ``stage1_steps``
option names a fault:

====================  =========================================================
``stage1_steps``      what stage 1 does
====================  =========================================================
``OOM_STEPS``         raises ``torch.cuda.OutOfMemoryError`` (as CUDA would)
``HANG_STEPS``        never returns (a stuck kernel; only a watchdog ends it)
``CRASH_STEPS``       kills its own process with SIGKILL (a segfault, say)
``SLOW_STEPS``        ``SLOW_STEP_COUNT`` steps of ``SLOW_STEP_S``, reporting each one
``LONG_STEPS``        the same with ``LONG_STEP_COUNT`` steps
``OVERRUN_STEPS``     the same with ``OVERRUN_STEP_COUNT`` steps (outlives the visibility timeout)
``ERROR_STEPS``       raises an unexpected exception (the model failed)
anything else         a few quick steps
====================  =========================================================

and stage 2 never returns when ``stage2_steps`` is ``STAGE2_HANG_STEPS`` (after
stage 1's files were published).
"""

from __future__ import annotations

import os
import signal
import time

from bench.quick_pipelines import QuickStage1, QuickStage2, keep_image, load_quick_pipelines
from pipelines.base import GenerationPipelines

OOM_STEPS = 101
HANG_STEPS = 102
CRASH_STEPS = 103
SLOW_STEPS = 104
LONG_STEPS = 105
OVERRUN_STEPS = 106
ERROR_STEPS = 107
STAGE2_HANG_STEPS = 99
SLOW_STEP_S = 0.1
SLOW_STEP_COUNT = 20
"""A slow job runs about two seconds, reporting progress (a checkpoint) every step."""
LONG_STEP_COUNT = 30
"""A long job runs about three seconds (under the fault tests' visibility timeout)."""
OVERRUN_STEP_COUNT = 80
"""An overrunning job runs about eight seconds (twice the fault tests' visibility timeout)."""


class FaultyStage1(QuickStage1):
    def __call__(self, image, *, generator=None, callback=None, num_inference_steps=50, guidance_scale=3.0):
        if num_inference_steps == OOM_STEPS:
            import torch

            # What the CUDA caching allocator raises when an allocation does not fit.
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        if num_inference_steps == HANG_STEPS:
            while True:
                time.sleep(3600)
        if num_inference_steps == CRASH_STEPS:
            os.kill(os.getpid(), signal.SIGKILL)
        if num_inference_steps == ERROR_STEPS:
            raise RuntimeError("the model broke on /opt/models/secret.safetensors")
        slow = {SLOW_STEPS: SLOW_STEP_COUNT, LONG_STEPS: LONG_STEP_COUNT, OVERRUN_STEPS: OVERRUN_STEP_COUNT}
        if num_inference_steps in slow:
            return self.run(image, callback, steps=slow[num_inference_steps], step_s=SLOW_STEP_S)
        return self.run(image, callback)


class FaultyStage2(QuickStage2):
    def __call__(self, views, *, generator=None, callback=None, num_steps=25, cfg_strength=5.0,
                 texture_size=1024, simplify=0.7):
        if num_steps == STAGE2_HANG_STEPS:
            while True:
                time.sleep(3600)
        return super().__call__(views, callback=callback)


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


SLOW_LOAD_S = 8.0
"""How long :func:`load_slowly` takes: longer than the service tests' heartbeat TTL (5 s)."""


def load_slowly(device: str = "cpu", **_: object) -> GenerationPipelines:
    """The quick pipelines after a load as long as a GPU worker's first start (scaled down)."""
    time.sleep(SLOW_LOAD_S)
    return load_quick_pipelines(device)
