"""Generation options: their bounds and defaults, in one place.

The API validates requests against :class:`GenerationOptions` (``POST /v1/jobs``
and ``/generate`` alike), ``/info`` publishes :func:`option_bounds`, and the
worker maps a job's options onto the pipelines' own knobs in one function
(``worker.pipeline_options``).  Defaults are those of the official SyncHuman
release.  Validation is strict: a JSON ``true`` is not the integer 1 and
``"7"`` is not a number; both answer ``invalid_options``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

TEXTURE_SIZES = (512, 1024, 2048)
MODEL_FORMATS = ("glb", "usdz", "obj")
"""Formats of the model a job may ask for (``pipelines.outputs`` writes them); the GLB is always made."""
ModelFormat = Literal["glb", "usdz", "obj"]


class GenerationOptions(BaseModel):
    """Knobs of one generation; every one bounded."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    seed: int = Field(43, ge=0, le=2**31 - 1, description="Random seed of both stages.")
    stage1_steps: int = Field(50, ge=1, le=200, description="Stage-1 diffusion steps.")
    guidance_scale: float = Field(3.0, ge=0.0, le=20.0, description="Stage-1 classifier-free guidance.")
    stage2_steps: int = Field(25, ge=1, le=100, description="Stage-2 flow sampling steps.")
    cfg_strength: float = Field(5.0, ge=0.0, le=20.0, description="Stage-2 classifier-free guidance.")
    texture_size: int = Field(1024, ge=512, le=2048, description="Side of the baked texture (px); 512, 1024 or 2048.")
    simplify: float = Field(0.7, ge=0.0, le=0.98, description="Fraction of faces removed by simplification.")
    stage1_only: bool = Field(False, description="Stop after stage 1 (five views, normals, occupancy; no mesh).")
    rig: bool = Field(
        False, description="Also write stage2/rigged.glb: the model skinned to a humanoid skeleton, with a short clip."
    )
    formats: tuple[ModelFormat, ...] = Field(
        ("glb",),
        description="Formats of the model besides the GLB, which is always made: any of "
        "'usdz' (AR Quick Look) and 'obj' (zip of OBJ, MTL and texture).",
        strict=False,  # a JSON array, also once stored on the job and read back as a list
    )

    @field_validator("texture_size")
    @classmethod
    def _texture_size_is_supported(cls, value: int) -> int:
        if value not in TEXTURE_SIZES:
            raise ValueError(f"texture_size must be one of {', '.join(map(str, TEXTURE_SIZES))}")
        return value

    @field_validator("formats")
    @classmethod
    def _formats_once_each(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(dict.fromkeys(("glb", *value)))


def option_bounds() -> dict[str, dict[str, Any]]:
    """``{name: {default, minimum, maximum, description}}`` for every option."""
    schema = GenerationOptions.model_json_schema()["properties"]
    bounds = {}
    for name, prop in schema.items():
        bounds[name] = {
            "default": prop.get("default"),
            "minimum": prop.get("minimum"),
            "maximum": prop.get("maximum"),
            "description": prop.get("description"),
        }
    bounds["texture_size"]["allowed"] = list(TEXTURE_SIZES)
    bounds["formats"]["allowed"] = list(MODEL_FORMATS)
    return bounds
