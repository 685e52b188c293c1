"""How a worker reacts to faults around a job, so the job record stays truthful.

* GPU out of memory → the job fails with ``gpu_out_of_memory`` (not retried:
  the same job on the same GPU would fail again), and the worker frees the
  memory the attempt held before taking the next job.
* A stage overruns its limit → :class:`~worker.watchdog.StageWatchdog` fails the
  job with ``timeout`` (:func:`fail_timed_out`), removes what it had uploaded
  and recycles the process.
* SIGTERM (warm shutdown) → the running job stops at its next progress step
  (:class:`WorkerShuttingDown`), is released (:func:`release_for_requeue`) and
  its message requeued, so another worker finishes it; the released attempt
  does not count towards ``worker.max_attempts``.
* A job outlives the broker's visibility timeout → it is redelivered and
  claimed by another worker; the older attempt stops at its next progress step
  (:class:`AttemptSuperseded`) and never writes an outcome, so the job still
  finishes once.
* Redis briefly unreachable → progress writes are skipped (they are advisory)
  and the final status write is retried (:func:`retry_on_redis_errors`), so a
  restart of Redis does not turn a good job into a failed one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

import redis

from shared.errors import GpuOutOfMemoryError, JobTimeoutError
from shared.jobs import JobError, JobRecord, JobStatus, transition

if TYPE_CHECKING:
    from shared.job_store import JobStore
    from shared.settings import Settings
    from shared.storage.base import Storage

log = logging.getLogger("synchuman.worker")

T = TypeVar("T")

PARTIAL_ARTIFACTS = ("stage1/", "stage2/", "results.zip")
"""What a job writes under ``jobs/{id}/`` besides its input; removed when it fails or is canceled."""

REDIS_RETRY_S = 120.0
"""How long a worker keeps trying to write a job's final status while Redis is down."""


class WorkerShuttingDown(Exception):
    """Raised at a progress step once the worker was asked to shut down (SIGTERM)."""


class AttemptSuperseded(Exception):
    """Raised at a progress step once another worker has claimed the job (this attempt outlived the
    broker's visibility timeout and the job was redelivered): the newer attempt finishes it."""


def out_of_memory_error(exc: BaseException) -> dict | None:
    """The job error for a GPU out-of-memory exception (memory freed), or None for other errors."""
    from worker.gpu_memory import is_out_of_memory, release_failed_attempt

    if not is_out_of_memory(exc):
        return None
    release_failed_attempt(exc)
    error = GpuOutOfMemoryError("the job did not fit in GPU memory; try smaller options or retry later")
    return error.to_dict()


def stage_limits(settings: Settings) -> dict[str, float]:
    w = settings.watchdog
    return {"preprocess": w.preprocess_s, "stage1": w.stage1_s, "stage2": w.stage2_s,
            "export": w.export_s, "upload": w.upload_s}


def remove_partial_artifacts(storage: Storage, job_id: str) -> None:
    """Delete what this (or an earlier) attempt uploaded; best effort: the job's status matters more."""
    for partial in PARTIAL_ARTIFACTS:
        try:
            storage.delete_prefix(f"jobs/{job_id}/{partial}")
        except Exception:  # noqa: BLE001 - e.g. the object store is the reason the job failed
            log.warning("partial artifacts not removed", extra={"job_id": job_id, "prefix": partial}, exc_info=True)


def fail_timed_out(store: JobStore, storage: Storage):
    """The watchdog's ``on_timeout``: mark the job failed with ``timeout`` (once), then remove
    the files it had uploaded (the stage-1 set, once stage 1 is over)."""

    def on_timeout(job_id: str, stage: str, limit_s: float) -> None:
        error = JobTimeoutError(f"stage {stage} ran longer than its limit of {limit_s:g} s")

        def fail(record: JobRecord) -> JobRecord | None:
            if record.status is not JobStatus.running:
                return None
            return transition(record, JobStatus.failed, error=JobError(**error.to_dict()))

        retry_on_redis_errors(lambda: store.update(job_id, fail), deadline_s=10.0)
        remove_partial_artifacts(storage, job_id)

    return on_timeout


def release_for_requeue(store: JobStore, job_id: str, worker_id: str) -> JobRecord:
    """Give a running job back to the queue: this attempt does not count."""

    def release(record: JobRecord) -> JobRecord | None:
        if record.status is not JobStatus.running or record.worker_id != worker_id:
            return None
        return record.model_copy(update={"attempts": max(record.attempts - 1, 0), "worker_id": None})

    return retry_on_redis_errors(lambda: store.update(job_id, release), deadline_s=10.0)


def retry_on_redis_errors(operation: Callable[[], T], *, deadline_s: float = REDIS_RETRY_S) -> T:
    """Run ``operation``, retrying with backoff while Redis is unreachable, up to ``deadline_s``."""
    give_up_at = time.monotonic() + deadline_s
    delay = 0.2
    while True:
        try:
            return operation()
        except (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError):
            if time.monotonic() + delay > give_up_at:
                raise
            log.warning("redis unreachable; retrying", extra={"delay_s": round(delay, 2)})
            time.sleep(delay)
            delay = min(delay * 2, 5.0)
