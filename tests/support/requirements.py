"""What a test needs from outside the repository, and what happens when it is missing.

A developer's machine may lack an optional tool (the folder ``../shared``, the
pose model, node's glTF validator, Chromium): the test that needs it is then
skipped.  Under ``CI=true`` every one of them must be there, so the same absence
fails the test instead of hiding a regression behind a skip.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NoReturn

import pytest

from client.stack import REPO_ROOT


def unavailable(message: str) -> NoReturn:
    """Skip the calling test because ``message`` is missing; fail it under CI=true."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message + " (CI=true: it must be installed)")
    pytest.skip(message)


def shared_dir() -> Path | None:
    """``../shared`` (design notes, parity fixtures, sample photos), or ``$SYNCHUMAN_SHARED_DIR``; None if absent."""
    candidates = [os.environ.get("SYNCHUMAN_SHARED_DIR"), REPO_ROOT.parent / "shared"]
    for candidate in candidates:
        if candidate and (Path(candidate) / "parity").is_dir():
            return Path(candidate)
    return None


def require_shared(*parts: str) -> Path:
    """Path under ../shared; skip if absent, fail if absent under CI=true."""
    base = shared_dir()
    path = base.joinpath(*parts) if base else None
    if path is None or not path.exists():
        unavailable(f"../shared/{'/'.join(parts)} is not available")
    return path


def require_pose_model() -> None:
    """Skip when MediaPipe (extra 'segment') is not installed; fail under CI=true, where it must be."""
    from pipelines.person.cutout import pose_model_available

    if not pose_model_available():
        unavailable("the pose model (mediapipe, extra 'segment') is not installed")
