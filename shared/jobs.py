"""The job record and its state machine.

One record per job, stored as JSON by ``shared.job_store``.  Status changes go
through :func:`transition`, which refuses anything not in ``ALLOWED`` — the
stores apply it inside a Redis transaction so that two processes can never both
move a job (for example a redelivered task and a cancel).
"""

from __future__ import annotations

import time
import uuid
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field

from shared.deliveries import ArtifactDelivery
from shared.errors import IllegalTransitionError


class JobStatus(StrEnum):
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    canceled = "canceled"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL


class JobStage(StrEnum):
    """What a running job is doing, in order."""

    preprocess = "preprocess"
    stage1 = "stage1"
    stage2 = "stage2"
    export = "export"
    upload = "upload"


TERMINAL = frozenset({JobStatus.succeeded, JobStatus.failed, JobStatus.canceled})

ALLOWED: dict[JobStatus, frozenset[JobStatus]] = {
    JobStatus.queued: frozenset({JobStatus.running, JobStatus.canceled, JobStatus.failed}),
    # running -> running is a restart after the previous attempt's worker died.
    JobStatus.running: frozenset({JobStatus.running, JobStatus.succeeded, JobStatus.failed, JobStatus.canceled}),
    JobStatus.succeeded: frozenset(),
    JobStatus.failed: frozenset(),
    JobStatus.canceled: frozenset(),
}

STAGE_PROGRESS: dict[JobStage, tuple[float, float]] = {
    JobStage.preprocess: (0.0, 2.0),
    JobStage.stage1: (2.0, 60.0),
    JobStage.stage2: (60.0, 92.0),
    JobStage.export: (92.0, 96.0),
    JobStage.upload: (96.0, 100.0),
}
"""Share of the 0-100 progress bar each stage covers (from, to)."""


class JobError(BaseModel):
    code: str
    message: str
    retryable: bool = False


class JobEvent(BaseModel):
    """One status change, kept on the record so its history can be audited."""

    status: JobStatus
    at: float
    attempt: int = 0


class JobRecord(BaseModel):
    id: str
    status: JobStatus = JobStatus.queued
    stage: JobStage | None = None
    progress: float = 0.0
    created_at: float = Field(default_factory=time.time)
    started_at: float | None = None
    finished_at: float | None = None
    options: dict[str, Any] = {}
    input_key: str
    webhook_url: str | None = None
    webhook_events: list[str] = []
    """Events ``webhook_url`` is called for (``shared.webhooks.WebhookEvent``); empty means ``completed``."""
    pipeline: dict[str, str] | None = None
    """``{name, version, device}`` of the pipeline that ran (or is running) the job."""
    worker_id: str | None = None
    attempts: int = 0
    timings: dict[str, float] = {}
    """Seconds per stage of the attempt that produced the result."""
    error: JobError | None = None
    outputs: dict[str, str] = {}
    """Artifact name (e.g. ``stage2/output.glb``) -> storage key: the complete stage-1 set while the
    job runs stage 2, every artifact once it succeeded, nothing once it failed or was canceled."""
    cancel_requested: bool = False
    owner: str | None = None
    """``key_id`` of the API key that created the job (None with authentication off)."""
    deliver_to: dict[str, str] = {}
    """Artifact name -> the caller's presigned PUT URL (``shared.deliveries``); never shown back."""
    deliveries: dict[str, ArtifactDelivery] = {}
    """Artifact name -> how its upload to ``deliver_to`` went so far."""
    history: list[JobEvent] = []


def new_job_id() -> str:
    return uuid.uuid4().hex


def transition(record: JobRecord, status: JobStatus, **changes: Any) -> JobRecord:
    """A copy of ``record`` moved to ``status`` with ``changes``; refuses illegal moves."""
    if status not in ALLOWED[record.status]:
        raise IllegalTransitionError(
            f"job {record.id} cannot go from {record.status.value} to {status.value}"
        )
    now = time.time()
    update: dict[str, Any] = {"status": status, **changes}
    if status is JobStatus.running and record.status is JobStatus.queued:
        update.setdefault("started_at", now)
    if status in TERMINAL:
        update.setdefault("finished_at", now)
        if status is JobStatus.succeeded:
            update.setdefault("progress", 100.0)
        else:  # failed or canceled: its partial artifacts are (being) removed
            update.setdefault("outputs", {})
    attempt = update.get("attempts", record.attempts)
    update["history"] = [*record.history, JobEvent(status=status, at=now, attempt=attempt)]
    return record.model_copy(update=update)


def overall_progress(stage: JobStage, step: int, total: int) -> float:
    """0-100 progress of a job that is at ``step`` of ``total`` within ``stage``."""
    start, end = STAGE_PROGRESS[stage]
    fraction = min(max(step / total, 0.0), 1.0) if total > 0 else 1.0
    return round(start + (end - start) * fraction, 1)
