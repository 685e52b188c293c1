"""The one mapping from a job's options (``shared.options.GenerationOptions``, what the API
validated) onto the pipelines' own knobs (``pipelines.base.Stage1Options``/``Stage2Options``)."""

from __future__ import annotations

from pipelines.base import Stage1Options, Stage2Options
from shared.options import GenerationOptions


def pipeline_options(options: GenerationOptions) -> tuple[Stage1Options, Stage2Options]:
    """``(stage 1 knobs, stage 2 knobs)`` of one job."""
    stage1 = Stage1Options(num_inference_steps=options.stage1_steps, guidance_scale=options.guidance_scale)
    stage2 = Stage2Options(
        num_steps=options.stage2_steps,
        cfg_strength=options.cfg_strength,
        texture_size=options.texture_size,
        simplify=options.simplify,
    )
    return stage1, stage2
