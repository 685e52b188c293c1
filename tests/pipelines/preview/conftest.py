"""Fixtures of the preview-pipeline tests: one warm pipeline, one run per photo."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipelines.base import GenerationPipelines
from pipelines.preview import load_preview
from tests.support.preview_runs import PreviewRun, on_plain_background, run_preview


@pytest.fixture(scope="session")
def preview() -> GenerationPipelines:
    return load_preview()


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
