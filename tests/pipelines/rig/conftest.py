"""Fixtures of the rigging tests: the preview pipeline's models of the sample photos, rigged once."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from PIL import Image

from pipelines.rig import RiggedModel, rig_glb
from tests.pipelines.rig.skinned_glb import SkinnedModel
from tests.support.preview_runs import PreviewRun, run_preview
from tests.support.requirements import require_pose_model


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

