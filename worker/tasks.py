"""The worker's tasks: thin functions that take ids and call into the runtime.

``worker.celery_app`` registers them under their task names; nothing here
imports the app.
"""

from __future__ import annotations

import logging

from celery import Task
from celery.exceptions import Reject

from shared.errors import InternalError
from shared.jobs import JobStatus
from worker.attempt import REDIS_ERRORS
from worker.deliveries import upload
from worker.generation import run_job
from worker.runtime import current_runtime
from worker.webhooks import deliver, delivery_context

log = logging.getLogger("synchuman.worker")


class JobTask(Task):
    """Keeps the job record truthful if a task body fails outside ``run_job``'s handling."""

    def on_failure(self, exc, task_id, args, kwargs, einfo) -> None:  # noqa: ANN001 - Celery's signature
        job_id = args[0] if args else kwargs.get("job_id")
        if not job_id:
            return
        log.error("job task failed", extra={"job_id": job_id, "error": type(exc).__name__}, exc_info=exc)
        error = InternalError("the worker failed on this job; the details are in its log")
        try:
            current_runtime().attempt_for(job_id).fail(error, deadline_s=10.0)
        except Exception:  # noqa: BLE001 - best effort; the original error is what matters
            log.exception("could not mark job failed", extra={"job_id": job_id})


def generate(job_id: str) -> str | None:
    """Generate job ``job_id`` (idempotent: safe to deliver more than once)."""
    runtime = current_runtime()
    try:
        record = run_job(runtime, job_id)
    except REDIS_ERRORS as exc:  # not even the failure could be written: try the message again later
        raise Reject(f"redis unreachable: {type(exc).__name__}; job requeued", requeue=True) from exc
    if record is None:
        return None
    if runtime.shutting_down.is_set() and record.status is JobStatus.queued:
        raise Reject("the worker is shutting down; job requeued", requeue=True)
    return record.status.value


def deliver_webhook(
    task: Task, job_id: str, event: str, delivery_id: str, attempt: int = 1, redelivery_of: str | None = None
) -> str | None:
    """One attempt of one webhook delivery (``worker.webhooks.deliver``); it queues its own retries."""
    delivery = deliver(delivery_context(), task.app, job_id, event, delivery_id, attempt, redelivery_of=redelivery_of)
    return delivery.state.value if delivery else None


def upload_artifact(task: Task, job_id: str, name: str, attempt: int = 1) -> str | None:
    """One attempt of one upload to a ``deliver_to`` URL (``worker.deliveries.upload``); it queues its own retries."""
    delivery = upload(delivery_context(), task.app, job_id, name, attempt)
    return delivery.state.value if delivery else None
