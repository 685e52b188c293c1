from __future__ import annotations

import pytest

from tests.pipelines.outputs.figure import figure_glb_bytes


@pytest.fixture(scope="session")
def figure_glb() -> bytes:
    """The small asymmetric textured figure of ``figure.py``, as a GLB."""
    return figure_glb_bytes()
