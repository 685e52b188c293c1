"""Fixtures shared by every test module.

``shared_dir`` is the folder of design notes, parity fixtures and sample photos
that lies beside a developer's or CI's checkout (``../shared``).  A user's
clone does not have it: tests that need it skip there, but fail under CI=true,
where a skipped parity test would hide a regression.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def _shared_dir() -> Path | None:
    candidates = [os.environ.get("SYNCHUMAN_SHARED_DIR"), REPO_ROOT.parent / "shared"]
    for candidate in candidates:
        if candidate and (Path(candidate) / "parity").is_dir():
            return Path(candidate)
    return None


def require_shared(*parts: str) -> Path:
    """Path under ../shared; skip if absent, fail if absent under CI=true."""
    base = _shared_dir()
    path = base.joinpath(*parts) if base else None
    if path is None or not path.exists():
        message = f"../shared/{'/'.join(parts)} is not available"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message + " (CI=true: fixtures must be present)")
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    return require_shared()


@pytest.fixture(scope="session")
def parity_dir() -> Path:
    return require_shared("parity", "synchuman")


@pytest.fixture(scope="session")
def sample_photos() -> list[Path]:
    folder = require_shared("samples")
    photos = sorted(folder.glob("*.png"))
    assert photos, "no sample photos in ../shared/samples"
    return photos
