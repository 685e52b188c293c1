"""Fixtures of the preview-pipeline tests: one warm pipeline, one run per photo."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from person.conftest import require_pose_model as require_segmenter  # noqa: F401 (used by the tests)
from pipelines.base import GenerationPipelines, MeshOutput, MultiviewOutput
from pipelines.preview import load_preview


def on_plain_background(rgba: Image.Image, color=(182, 190, 176)) -> Image.Image:
    """An opaque RGB photo: the cut-out composited over a plain wall colour, with a margin."""
    margin = max(rgba.size) // 6
    canvas = Image.new("RGB", (rgba.width + 2 * margin, rgba.height + 2 * margin), color)
    canvas.paste(rgba, (margin, margin), rgba)
    return canvas


@dataclass
class PreviewRun:
    name: str
    source: Image.Image
    views: MultiviewOutput
    mesh: MeshOutput
    stage1_steps: list
    stage2_steps: list


@pytest.fixture(scope="session")
def preview() -> GenerationPipelines:
    return load_preview()


def run_preview(preview: GenerationPipelines, name: str, image: Image.Image) -> PreviewRun:
    stage1_steps: list = []
    stage2_steps: list = []
    views = preview.stage1(image, callback=lambda *args: stage1_steps.append(args))
    mesh = preview.stage2(views, callback=lambda *args: stage2_steps.append(args))
    return PreviewRun(name, image, views, mesh, stage1_steps, stage2_steps)


@pytest.fixture(scope="session")
def sample_runs(preview, sample_photos: list[Path]) -> list[PreviewRun]:
    """The preview pipeline on every sample photo (RGBA cut-outs)."""
    return [run_preview(preview, path.stem, Image.open(path)) for path in sample_photos]


@pytest.fixture(scope="session")
def rgb_photo(sample_photos: list[Path]) -> tuple[Image.Image, np.ndarray]:
    """An opaque photo made from a sample, and the person mask it should segment to."""
    rgba = Image.open(sample_photos[-1]).convert("RGBA")
    photo = on_plain_background(rgba)
    margin = max(rgba.size) // 6
    truth = Image.new("L", photo.size, 0)
    truth.paste(rgba.getchannel("A"), (margin, margin))
    return photo, np.asarray(truth) > 127
