"""The files a finished model is delivered as, besides the GLB: pictures of it and other formats.

Every one is made from the GLB the export wrote (``model.load_glb``), so all
of them show exactly what the user downloads, whichever method made it:

* always: ``thumbnail.png`` (512 x 512, transparent, front three-quarter),
  ``turntable.mp4`` (H.264, 512 x 512, a full turn in 5 s) and
  ``turntable.webp`` (the same turn, animated WebP) -- ``previews.py``,
  rendered by ``render.py`` and encoded by ``media.py``;
* on request, per job (option ``formats``): ``output.usdz`` for AR Quick
  Look (``usdz.py``, Pixar's USD) and ``output_obj.zip``, OBJ + MTL +
  texture (``obj.py``).

:func:`model_outputs` makes the set for one job.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from pipelines.base import ProgressCallback
from pipelines.outputs.model import TexturedModel, load_glb
from pipelines.outputs.obj import obj_zip_bytes
from pipelines.outputs.previews import thumbnail, turntable
from pipelines.outputs.render import ModelRenderer

MODEL_FORMATS = ("glb", "usdz", "obj")
"""Formats a job may ask for; the GLB is always made (every other output starts from it)."""

def _usdz_bytes(model: TexturedModel) -> bytes:
    """``output.usdz``; USD (usd-core, ~35 MB) is imported on the first job that asks for it."""
    from pipelines.outputs.usdz import usdz_bytes

    return usdz_bytes(model)


FORMAT_FILES: dict[str, tuple[str, Callable[[TexturedModel], bytes]]] = {
    "usdz": ("output.usdz", _usdz_bytes),
    "obj": ("output_obj.zip", obj_zip_bytes),
}
"""Format -> (file name, writer) of the formats made on request."""

PREVIEW_FILES = ("thumbnail.png", "turntable.mp4", "turntable.webp")
"""Made for every model."""

_renderer = ModelRenderer()
"""One per process: its OpenGL context (one per thread) is made on first use and kept."""


@dataclass
class ModelOutputs:
    files: dict[str, bytes]
    """File name -> bytes, beside ``output.glb``."""
    timings: dict[str, float] = field(default_factory=dict)
    """Seconds spent on each output (``thumbnail``, ``turntable``, ``usdz``, ``obj``), wall clock."""


def model_outputs(
    glb: bytes, formats: Iterable[str] = ("glb",), *, callback: ProgressCallback | None = None
) -> ModelOutputs:
    """The thumbnail, the turntable and the requested ``formats`` of the model in ``glb``.

    ``callback("outputs", done, total)`` is called after each output (it may
    raise to stop, as the pipelines' callback).  Raises ``ValueError`` for a format not in :data:`MODEL_FORMATS`, and
    ``PipelineInputError('invalid_model')`` for a GLB that is not one textured mesh.
    """
    formats = list(dict.fromkeys(formats))
    unknown = [name for name in formats if name not in MODEL_FORMATS]
    if unknown:
        raise ValueError(f"unknown formats {unknown}; choose from {list(MODEL_FORMATS)}")
    requested = [name for name in formats if name in FORMAT_FILES]
    total = 3 + len(requested)  # load, thumbnail, turntable, then one per format
    timings: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[name] = round(now - clock, 3)
        clock = now
        if callback is not None:
            callback("outputs", len(timings), total)

    model = load_glb(glb)
    lap("load")
    files = {"thumbnail.png": thumbnail(model, _renderer)}
    lap("thumbnail")
    video = turntable(model, _renderer)
    files["turntable.mp4"], files["turntable.webp"] = video.mp4, video.webp
    lap("turntable")
    for name in requested:
        file_name, write = FORMAT_FILES[name]
        files[file_name] = write(model)
        lap(name)
    return ModelOutputs(files=files, timings=timings)
