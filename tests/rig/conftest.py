"""Fixtures of the rigging tests: the preview pipeline's models of the sample photos, rigged once."""

from __future__ import annotations

import os
from dataclasses import dataclass

import pytest
from PIL import Image

from pipelines.rig import RiggedModel, rig_glb
from preview.conftest import PreviewRun, run_preview
from rig.skinned_glb import SkinnedModel


def require_pose_model() -> None:
    """Skip when MediaPipe (extra 'segment') is missing; fail under CI=true, where it must be installed."""
    try:
        import mediapipe  # noqa: F401
    except ImportError:
        message = "the pose model (mediapipe, extra 'segment') is not installed"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message + " (CI=true: it must be installed)")
        pytest.skip(message)


@dataclass
class RiggedRun:
    preview: PreviewRun
    rigged: RiggedModel
    model: SkinnedModel


@pytest.fixture(scope="session")
def rigged_runs(sample_photos) -> list[RiggedRun]:
    require_pose_model()
    from pipelines.preview import load_preview

    pipelines = load_preview()
    runs = []
    for path in sample_photos:
        run = run_preview(pipelines, path.stem, Image.open(path))
        rigged = rig_glb(run.mesh.glb, run.views.colors[0])
        runs.append(RiggedRun(preview=run, rigged=rigged, model=SkinnedModel.from_glb(rigged.glb)))
    return runs

