"""Builds a method's two stages by name; the one place a worker asks for pipelines.

``preview`` needs no weights and runs on the CPU.  ``synchuman`` reads the
official released checkpoints from a local weights directory laid out as::

    {weights_dir}/OneStage/...                        the official ckpts/OneStage folder
    {weights_dir}/SecondStage/...                     the official ckpts/SecondStage folder
    {weights_dir}/dinov2/dinov2_vitl14_reg4_pretrain.pth   DINOv2 ViT-L/14 with registers

Both methods start from the same preprocessing step, the person cut-out
(``pipelines/person/cutout.py``), whose segmentation backend ``segmenter``
names: ``mediapipe`` (CPU, bundled) or ``onnx`` with ``segmenter_model``, a
rembg-compatible ONNX file (relative paths are under ``weights_dir``).

Imports are local so that a worker only pays for the method it runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pipelines.base import GenerationPipelines

if TYPE_CHECKING:
    from pipelines.person.cutout import PersonCutout

PIPELINE_NAMES = ("preview", "synchuman")


def load_pipelines(
    name: str,
    *,
    weights_dir: str | Path | None = None,
    device: str = "cpu",
    dtype: str | None = None,
    compile: bool = False,
    compile_cache_dir: str | Path | None = None,
    segmenter: str = "mediapipe",
    segmenter_model: str | Path | None = None,
) -> GenerationPipelines:
    """Load both stages of pipeline ``name`` onto ``device``, and its warm preprocessing step.

    ``compile`` asks for the compiled GPU configuration where the pipeline has
    one; ``compile_cache_dir``, if given, keeps it compiled ahead of time there.  Raises ValueError on a bad pipeline or segmenter name, or a missing
    segmentation model file.
    """
    cutout = load_cutout(segmenter, model=segmenter_model, weights_dir=weights_dir, device=device)
    if name == "preview":
        from pipelines.preview import load_preview

        pipelines = load_preview(device=device)
    elif name == "synchuman":
        if weights_dir is None:
            raise ValueError("the synchuman pipeline needs a weights directory")
        from pipelines.synchuman import load_synchuman

        pipelines = load_synchuman(
            Path(weights_dir), device=device, dtype=dtype, compile=compile,
            compile_cache_dir=Path(compile_cache_dir) if compile_cache_dir is not None else None,
        )
    else:
        raise ValueError(f"unknown pipeline {name!r}; choose one of {', '.join(PIPELINE_NAMES)}")
    pipelines.preprocess = cutout
    return pipelines


def load_cutout(
    segmenter: str = "mediapipe",
    *,
    model: str | Path | None = None,
    weights_dir: str | Path | None = None,
    device: str = "cpu",
) -> PersonCutout:
    """The person cut-out with the segmentation backend ``segmenter``, its models loaded now."""
    from pipelines.person.cutout import PersonCutout
    from pipelines.person.segmenters import load_segmenter

    cutout = PersonCutout(load_segmenter(segmenter, model=model, weights_dir=weights_dir, device=device))
    cutout.warm()
    return cutout


def load_pipeline_factory(spec: str, *, device: str = "cpu") -> GenerationPipelines:
    """Operator/testing hook: build pipelines with the function ``spec`` names (``module:function``).

    The function is called as ``function(device=device)`` and returns
    ``GenerationPipelines``.  Operators use it to plug in their own method;
    the fault tests use it to load pipelines that fail on request.
    """
    import importlib

    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise ValueError(f"pipeline factory {spec!r} is not of the form module:function")
    factory = getattr(importlib.import_module(module_name), attribute)
    return factory(device=device)
