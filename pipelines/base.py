"""The contract every generation pipeline honours.

A generation runs in two stages, whatever the method behind them:

* stage 1 turns one RGBA photo of a person into five synchronised views
  (front, right, back, left, face close-up), their normal maps, and the
  occupied voxels of a 64^3 grid over the unit cube;
* stage 2 turns that into a textured mesh, written as GLB and PLY.

Each stage is a plain object in the style of diffusers pipelines: built once
(``from_pretrained`` or a constructor), then called as
``stage(inputs, *, generator=None, callback=None, **knobs)``.  The call checks
its inputs first, runs numbered steps and returns one of the dataclasses below.
Nothing in ``pipelines/`` knows about queues, settings or storage.

Progress and cancellation go through one callback,
``callback(stage, step, total)``, called after every step.  The caller may
raise from it to stop the run; the exception propagates out of ``__call__``
unchanged, so the caller decides what "cancelled" means.

Coordinates follow the official model (TRELLIS frame): z is up, the subject
lives in the cube [-0.5, 0.5]^3, voxel index i of 64 maps to (i + 0.5)/64 - 0.5.
Views are orthographic over that cube; views 2 (back) and 3 (left) are stored
horizontally mirrored, exactly as the official stage 1 writes them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from PIL import Image

ProgressCallback = Callable[[str, int, int], None]
"""``callback(stage, step, total)``: called after each step; may raise to cancel."""

VIEW_NAMES = ("front", "right", "back", "left", "face")
"""Order of the five stage-1 views; index i is ``color_i.png`` / ``normal_i.png``."""

VIEW_SIZE = 768
GRID_RESOLUTION = 64


class PipelineInputError(ValueError):
    """The input cannot be turned into a person model.

    ``code`` is a stable machine-readable reason (for example ``no_foreground``)
    that callers map onto their own error vocabulary.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Stage1Options:
    """Knobs of stage 1, with the official model's defaults."""

    num_inference_steps: int = 50
    guidance_scale: float = 3.0


@dataclass(frozen=True)
class Stage2Options:
    """Knobs of stage 2 and the export, with the official model's defaults."""

    num_steps: int = 25
    cfg_strength: float = 5.0
    texture_size: int = 1024
    simplify: float = 0.7
    """Fraction of the faces removed by quadric simplification."""


@dataclass
class MultiviewOutput:
    """What stage 1 hands to stage 2 (and what ``stage1/`` holds on disk)."""

    source: Image.Image
    """The RGBA person image stage 1 started from (alpha > 0 is the person)."""
    input_image: Image.Image
    """768x768 RGBA: the person cropped to its alpha box, centred (``stage1/input.png``)."""
    colors: list[Image.Image]
    """5 RGB images, 768x768 on white, in ``VIEW_NAMES`` order."""
    normals: list[Image.Image]
    """5 RGB normal maps (n * 0.5 + 0.5 on white), same order and size."""
    coords: np.ndarray
    """(N, 4) int32 rows [0, x, y, z] of the occupied cells of the 64^3 grid."""
    timings: dict[str, float] = field(default_factory=dict)
    extras: dict[str, Any] = field(default_factory=dict)
    """Pipeline-specific data stage 2 of the same pipeline may use (never written)."""


@dataclass
class MeshOutput:
    """What stage 2 produces (and what ``stage2/`` holds on disk)."""

    glb: bytes
    """The textured model: y-up, one PBR material with a base-colour texture."""
    mesh_ply: bytes
    """The same mesh (z-up, official frame) as binary PLY, with vertex colours if known."""
    num_vertices: int
    num_faces: int
    timings: dict[str, float] = field(default_factory=dict)


class Stage1Pipeline(Protocol):
    def __call__(
        self,
        image: Image.Image,
        *,
        generator: Any = None,
        callback: ProgressCallback | None = None,
        num_inference_steps: int = 50,
        guidance_scale: float = 3.0,
    ) -> MultiviewOutput: ...


class Stage2Pipeline(Protocol):
    def __call__(
        self,
        views: MultiviewOutput,
        *,
        generator: Any = None,
        callback: ProgressCallback | None = None,
        num_steps: int = 25,
        cfg_strength: float = 5.0,
        texture_size: int = 1024,
        simplify: float = 0.7,
    ) -> MeshOutput: ...


@dataclass
class GenerationPipelines:
    """Both stages of one method, loaded once and kept warm by a worker."""

    name: str
    """``preview`` or ``synchuman``."""
    version: str
    description: str
    stage1: Stage1Pipeline
    stage2: Stage2Pipeline
    device: str = "cpu"
    load_timings: dict[str, float] = field(default_factory=dict)
    """Seconds of each loading phase (weights, compilation, warm-up), for the worker's start-up log."""
    preprocess: Callable[[Image.Image], Image.Image] | None = None
    """The preprocessing step (``pipelines.person.cutout.PersonCutout``): photo -> RGBA cut-out of the
    person, or :class:`PipelineInputError` (``no_person``...).  None: the CPU default, built on first use."""

    def cut_out(self, image: Image.Image) -> Image.Image:
        """Run the preprocessing step every job starts with (before stage 1)."""
        if self.preprocess is None:
            from pipelines.person.cutout import PersonCutout

            self.preprocess = PersonCutout()
        return self.preprocess(image)
