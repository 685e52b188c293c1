"""Fixtures of the person tests: the warm cut-out (skip without the pose model, fail under CI)."""

from __future__ import annotations

import pytest

from pipelines.person.cutout import PersonCutout
from tests.support.requirements import require_pose_model


@pytest.fixture(scope="session")
def cutout() -> PersonCutout:
    require_pose_model()
    cutout = PersonCutout()
    cutout.warm()
    return cutout
