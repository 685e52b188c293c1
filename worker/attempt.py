"""One worker's attempt at one job: the only writer of a running job's status.

A job message may be delivered more than once (late acks; a redelivery after
the visibility timeout; a job given back by a worker that shut down), so
several attempts at one job can exist over its life.  Only one owns the job at
a time: the one whose worker id the running record carries.  Every change an
attempt makes goes through one guard, :meth:`JobAttempt._owns`, inside the job
store's transaction:

* :meth:`claim` starts the job (or ends it ``worker_lost`` once it has used its
  ``max_attempts`` starts, or leaves a finished job alone);
* :meth:`progress`, :meth:`check` and :meth:`publish_stage1` act while the job runs and stop
  the attempt (:class:`AttemptSuperseded`, :class:`~shared.errors.JobCanceledError`)
  when it no longer owns the job or a cancel was requested;
* :meth:`succeed`, :meth:`fail` and :meth:`cancel` end the job through
  :meth:`finish`, which queues the ``completed`` webhook exactly when this
  attempt's write is the one that ended the job;
* :meth:`release` gives the job back to the queue (the worker shuts down); the
  released start does not count as an attempt.

An attempt that lost the job (another worker claimed it, or it was recovered
from this worker's missed heartbeats) writes nothing more and leaves the
artifacts to the owner, which writes the same keys.

Events go out through ``announce(record, event)``, handed in by the runtime.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

import redis

from shared.artifacts import remove_partial_artifacts
from shared.errors import JobCanceledError, JobNotFoundError, ServiceError, WorkerLostError
from shared.job_store import JobStore
from shared.jobs import JobError, JobRecord, JobStage, JobStatus, requeue, transition
from shared.storage.base import Storage
from shared.webhooks import WebhookEvent

log = logging.getLogger("synchuman.worker")

T = TypeVar("T")

Announce = Callable[[JobRecord, WebhookEvent], None]
"""Queues a webhook event for a job (``shared.webhooks.fire`` bound to the worker's Celery app)."""

REDIS_ERRORS = (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError)
"""Redis being unreachable (restarting, loading its AOF), as opposed to a defect."""


class AttemptStopped(Exception):
    """The attempt stops before the job ends; the job itself goes on elsewhere."""


class WorkerShuttingDown(AttemptStopped):
    """Raised at a progress step once the worker was asked to shut down (SIGTERM)."""


class AttemptSuperseded(AttemptStopped):
    """Raised at a progress step once this attempt no longer owns the job: another worker
    claimed it (a redelivery), or it was given back to the queue because this worker
    missed its heartbeats.  The job's owner finishes it."""


def retry_on_redis_errors(operation: Callable[[], T], *, deadline_s: float) -> T:
    """Run ``operation``, retrying with backoff while Redis is unreachable, up to ``deadline_s``."""
    give_up_at = time.monotonic() + deadline_s
    delay = 0.2
    while True:
        try:
            return operation()
        except REDIS_ERRORS:
            if time.monotonic() + delay > give_up_at:
                raise
            log.warning("redis unreachable; retrying", extra={"delay_s": round(delay, 2)})
            time.sleep(delay)
            delay = min(delay * 2, 5.0)


class JobAttempt:
    """This worker's attempt at job ``job_id``."""

    def __init__(
        self,
        store: JobStore,
        storage: Storage,
        job_id: str,
        *,
        worker_id: str,
        announce: Announce,
        redis_retry_s: float,
    ) -> None:
        self.store = store
        self.storage = storage
        self.job_id = job_id
        self.worker_id = worker_id
        self.announce = announce
        self.redis_retry_s = redis_retry_s
        """How long a status write is retried while Redis is unreachable."""

    # -- the one guard -------------------------------------------------------------------------

    def _owns(self, record: JobRecord) -> bool:
        return record.status is JobStatus.running and record.worker_id == self.worker_id

    def _write(self, change: Callable[[JobRecord], JobRecord], *, deadline_s: float | None = None) -> JobRecord | None:
        """Apply ``change`` if this attempt owns the job; the new record, or None if it does not."""
        applied: list[JobRecord] = []

        def guarded(record: JobRecord) -> JobRecord | None:
            if not self._owns(record):
                return None
            applied.append(change(record))
            return applied[-1]

        deadline = self.redis_retry_s if deadline_s is None else deadline_s
        current = retry_on_redis_errors(lambda: self.store.update(self.job_id, guarded), deadline_s=deadline)
        if applied and current is applied[-1]:
            return current
        log.warning(
            "attempt stopped: the job is no longer this worker's",
            extra={"job_id": self.job_id, "status": current.status.value, "owner": current.worker_id},
        )
        return None

    # -- starting ------------------------------------------------------------------------------

    def claim(self, *, max_attempts: int, pipeline: dict[str, str]) -> JobRecord | None:
        """Start the job; its running record, or None if this attempt does not run it.

        A finished job is left alone; a job already started ``max_attempts`` times
        ends failed with ``worker_lost`` (a job that kills its workers never loops).
        """
        ended: list[JobRecord] = []

        def start(record: JobRecord) -> JobRecord | None:
            if record.status.is_terminal:
                return None
            if record.attempts >= max_attempts:
                lost = WorkerLostError(f"the job stopped its worker {record.attempts} times; giving up")
                ended.append(transition(record, JobStatus.failed, error=JobError.of(lost), worker_id=None))
                return ended[-1]
            return transition(
                record,
                JobStatus.running,
                attempts=record.attempts + 1,
                stage=JobStage.preprocess,
                progress=0.0,
                worker_id=self.worker_id,
                pipeline=pipeline,
                timings={},
                stage_started_at={},
                outputs={},  # an earlier attempt's stage-1 set is rewritten by this one
            )

        try:
            record = retry_on_redis_errors(lambda: self.store.update(self.job_id, start), deadline_s=self.redis_retry_s)
        except JobNotFoundError:
            log.warning("job record missing; message dropped", extra={"job_id": self.job_id})
            return None
        if ended and record is ended[-1]:
            self._ended(record)
            return None
        if not self._owns(record):
            return None
        self.announce(record, WebhookEvent.started)
        return record

    # -- while it runs -------------------------------------------------------------------------

    def progress(self, stage: JobStage, progress: float) -> None:
        """Write stage and progress; stop the attempt if it lost the job or a cancel was requested.

        The first write of a stage also records when the stage started (``stage_started_at``).
        Progress is advisory: while Redis is unreachable it is skipped and the job goes on.
        """
        def advance(record: JobRecord) -> JobRecord:  # progress never goes down within an attempt
            update: dict[str, Any] = {"stage": stage, "progress": max(progress, record.progress, 0.0)}
            if stage.value not in record.stage_started_at:
                update["stage_started_at"] = {**record.stage_started_at, stage.value: time.time()}
            return record.model_copy(update=update)

        try:
            record = self._write(advance, deadline_s=0)
        except REDIS_ERRORS:
            log.warning("progress not written: redis unreachable", extra={"job_id": self.job_id})
            return
        self._check(record)

    def check(self) -> None:
        """Stop the attempt if it lost the job or a cancel was requested (one read; skipped while
        Redis is unreachable)."""
        try:
            record = self.store.get(self.job_id)
        except REDIS_ERRORS:
            return
        self._check(record if self._owns(record) else None)

    def publish_stage1(self, outputs: dict[str, str]) -> JobRecord:
        """List the (already uploaded) stage-1 set on the record in one write, then fire
        ``stage1.completed``, whose payload thus carries the stage-1 URLs."""
        record = self._write(lambda current: current.model_copy(update={"outputs": outputs}))
        self._check(record)
        self.announce(record, WebhookEvent.stage1_completed)
        return record

    def _check(self, record: JobRecord | None) -> None:
        if record is None:
            raise AttemptSuperseded("the job is no longer this worker's")
        if record.cancel_requested:
            raise JobCanceledError("the job was canceled")

    # -- ending --------------------------------------------------------------------------------

    def finish(self, status: JobStatus, *, deadline_s: float | None = None, **changes: Any) -> JobRecord | None:
        """End the job with ``status`` if this attempt still owns it; queue ``completed`` then.

        None when the outcome is dropped (the job is another attempt's, or over).
        """
        record = self._write(lambda current: transition(current, status, **changes), deadline_s=deadline_s)
        if record is not None:
            self._ended(record)
        return record

    def _ended(self, record: JobRecord) -> None:
        """After the write that made the job terminal: announce it, then remove a failed job's partial
        files (its record lists none already; with the store down, removing can take a while)."""
        log.info("job ended", extra={"job_id": record.id, "status": record.status.value,
                                     "code": record.error.code if record.error else None})
        self.announce(record, WebhookEvent.completed)
        if record.status is not JobStatus.succeeded:
            remove_partial_artifacts(self.storage, record.id)

    def succeed(self, outputs: dict[str, str], timings: dict[str, float]) -> JobRecord | None:
        return self.finish(JobStatus.succeeded, stage=JobStage.upload, outputs=outputs, timings=timings)

    def fail(self, error: ServiceError, *, deadline_s: float | None = None) -> JobRecord | None:
        return self.finish(JobStatus.failed, deadline_s=deadline_s, error=JobError.of(error))

    def cancel(self) -> JobRecord | None:
        """End the job canceled (its cancel was requested while it ran)."""
        return self.finish(JobStatus.canceled)

    def release(self) -> JobRecord | None:
        """Give the job back to the queue (this worker shuts down); the start does not count."""
        return self._write(lambda current: requeue(current, count_attempt=False), deadline_s=10.0)
