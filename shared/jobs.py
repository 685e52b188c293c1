"""The job record and its state machine.

One record per job, stored as JSON by ``shared.job_store``.  Status changes go
through :func:`transition`, which refuses anything not in ``ALLOWED`` — the
stores apply it inside a Redis transaction so that two processes can never both
move a job (for example a redelivered task and a cancel).

Two rules that more than one process applies live here too, so they are
written once: :func:`cancel` (the API's cancel and the store's) and
:func:`recover` (what becomes of a running job whose worker stopped beating).
"""

from __future__ import annotations

import time
import uuid
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field

from shared.deliveries import ArtifactDelivery
from shared.errors import IllegalTransitionError, JobNotCancelableError, ServiceError, WorkerLostError


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
    # running -> running: a redelivered message restarts a job whose earlier attempt outlived the
    # broker's visibility timeout; running -> queued: a job given back (its worker shut down or died).
    JobStatus.running: frozenset(
        {JobStatus.queued, JobStatus.running, JobStatus.succeeded, JobStatus.failed, JobStatus.canceled}
    ),
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

    @classmethod
    def of(cls, error: ServiceError) -> JobError:
        return cls(code=error.code, message=error.message, retryable=error.retryable)


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
    stage_started_at: dict[str, float] = {}
    """Stage name -> when (epoch seconds) the current attempt first entered it, written with the
    progress of that stage.  A stage ends when the next stage listed starts (the export when
    ``upload`` starts), the last one at ``finished_at``; so two jobs' records show whether one job's
    export ran beside the next job's stage 1.  Emptied when an attempt starts or the job is requeued."""
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


def cancel(record: JobRecord, *, orphaned: bool = False) -> JobRecord | None:
    """The cancel rule: the canceled (or cancel-requested) record, or None when nothing changes.

    * queued -> canceled at once (the worker skips its message);
    * running -> ``cancel_requested``: its worker stops at the next step and ends it canceled;
      a running job whose worker is gone (``orphaned``) has nobody to stop it, so it is
      canceled at once;
    * canceled -> nothing (cancel is idempotent);
    * succeeded or failed -> :class:`~shared.errors.JobNotCancelableError`.
    """
    if record.status in (JobStatus.succeeded, JobStatus.failed):
        raise JobNotCancelableError(f"the job already {record.status.value}; it cannot be canceled")
    if record.status is JobStatus.queued or (record.status is JobStatus.running and orphaned):
        return transition(record, JobStatus.canceled, worker_id=None)
    if record.status is JobStatus.running and not record.cancel_requested:
        return record.model_copy(update={"cancel_requested": True})
    return None


def requeue(record: JobRecord, *, count_attempt: bool) -> JobRecord:
    """``record`` (running) given back to the queue; its attempt is forgotten unless ``count_attempt``."""
    return transition(
        record,
        JobStatus.queued,
        attempts=record.attempts if count_attempt else max(record.attempts - 1, 0),
        worker_id=None,
        stage=None,
        progress=0.0,
        stage_started_at={},
        outputs={},
    )


def recover(record: JobRecord, worker_id: str, *, max_attempts: int) -> JobRecord | None:
    """What becomes of job ``record`` once its worker ``worker_id`` stopped beating (died).

    None if the job has moved on meanwhile (finished, or claimed by another worker).
    Otherwise: canceled if a cancel was requested; failed with ``worker_lost`` once it
    used its ``max_attempts`` starts (a job that kills its workers never loops);
    else back in the queue, the dead worker's start counted as an attempt.
    """
    if record.status is not JobStatus.running or record.worker_id != worker_id:
        return None
    if record.cancel_requested:
        return cancel(record, orphaned=True)
    if record.attempts >= max_attempts:
        lost = WorkerLostError(f"the job's worker stopped {record.attempts} times; giving up")
        return transition(record, JobStatus.failed, error=JobError.of(lost), worker_id=None)
    return requeue(record, count_attempt=True)


def overall_progress(stage: JobStage, step: int, total: int) -> float:
    """0-100 progress of a job that is at ``step`` of ``total`` within ``stage``."""
    start, end = STAGE_PROGRESS[stage]
    fraction = min(max(step / total, 0.0), 1.0) if total > 0 else 1.0
    return round(start + (end - start) * fraction, 1)
