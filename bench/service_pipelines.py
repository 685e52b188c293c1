"""Pipeline factories for service benchmarks (``SYNCHUMAN_WORKER__PIPELINE_FACTORY``).

Random stage-1 weights fill about half of the 64^3 occupancy grid (230 k cells)
where a trained model outlines a person (20-40 k), and stage 2 and the export
cost follow the cell count.  :func:`person_shaped_synchuman` is the real
synchuman pipeline, loaded as a worker loads it, whose stage 1 hands stage 2 a
person-shaped occupancy instead, so a GPU benchmark with random weights times
the work a real photo causes.
"""

from __future__ import annotations

import dataclasses

from bench.person_occupancy import person_coords
from pipelines.base import GenerationPipelines, MultiviewOutput
from pipelines.registry import load_pipelines
from shared.settings import get_settings
from worker.runtime import pipeline_load_arguments


class PersonShapedStage1:
    """A stage-1 pipeline whose output occupancy is replaced by a person-shaped one."""

    def __init__(self, stage1) -> None:
        self.inner = stage1

    def __call__(self, image, **kwargs) -> MultiviewOutput:
        views = self.inner(image, **kwargs)
        views.coords = person_coords()
        return views


def person_shaped_synchuman(device: str = "cuda") -> GenerationPipelines:
    """The synchuman pipelines, loaded from the worker's settings as a worker loads them, with a
    person-shaped occupancy."""
    pipelines = load_pipelines("synchuman", **{**pipeline_load_arguments(get_settings().worker), "device": device})
    return dataclasses.replace(pipelines, stage1=PersonShapedStage1(pipelines.stage1))
