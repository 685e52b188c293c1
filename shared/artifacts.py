"""Where a job's files live in storage, and how a failed job's partial files are removed.

Every job writes under one prefix, ``jobs/{id}/`` (layout in the README): its
normalised upload ``input.png``, the ``stage1/`` set, the ``stage2/`` files and
``results.zip``.  A job that fails or is canceled keeps only its input; the API
(a canceled orphan) and the worker (a failed attempt) remove the rest the same way.
"""

from __future__ import annotations

import logging

from shared.storage.base import Storage

log = logging.getLogger("synchuman.storage")

PARTIAL_ARTIFACTS = ("stage1/", "stage2/", "results.zip")
"""What a job writes under ``jobs/{id}/`` besides its input; removed when it fails or is canceled."""


def job_prefix(job_id: str) -> str:
    return f"jobs/{job_id}"


def artifact_key(job_id: str, name: str) -> str:
    """The storage key of artifact ``name`` (e.g. ``stage1/color_0.png``) of job ``job_id``."""
    return f"{job_prefix(job_id)}/{name}"


def input_key(job_id: str) -> str:
    return artifact_key(job_id, "input.png")


def remove_partial_artifacts(storage: Storage, job_id: str) -> None:
    """Delete what the job's attempts uploaded; best effort: the job's status matters more."""
    for partial in PARTIAL_ARTIFACTS:
        try:
            storage.delete_prefix(artifact_key(job_id, partial))
        except Exception:  # noqa: BLE001 - e.g. the object store is the reason the job failed
            log.warning("partial artifacts not removed", extra={"job_id": job_id, "prefix": partial}, exc_info=True)
