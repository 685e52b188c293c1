"""Thin Celery tasks: they take ids and call into the runtime."""

from __future__ import annotations

import logging

from celery import Task

from shared.errors import UrlFetchError, UrlRefusedError
from shared.jobs import JobError, JobStatus
from shared.queue import GENERATE_TASK, WEBHOOK_QUEUE, WEBHOOK_TASK
from worker.celery_app import app
from worker.generation import run_job
from worker.runtime import current_runtime
from worker.webhooks import WebhookDeliveryError, deliver_webhook

log = logging.getLogger("synchuman.worker")


class JobTask(Task):
    """Keeps the job record truthful if a task body fails outside ``run_job``'s handling."""

    def on_failure(self, exc, task_id, args, kwargs, einfo) -> None:  # noqa: ANN001 - Celery's signature
        job_id = args[0] if args else kwargs.get("job_id")
        if not job_id:
            return
        error = JobError(code="internal_error", message=f"{type(exc).__name__}: {exc}", retryable=True)

        def fail(record):
            if record.status.is_terminal:
                return None
            from shared.jobs import transition

            return transition(record, JobStatus.failed, error=error)

        try:
            current_runtime().store.update(job_id, fail)
        except Exception:  # noqa: BLE001 - best effort; the original error is what matters
            log.exception("could not mark job failed", extra={"job_id": job_id})


@app.task(name=GENERATE_TASK, base=JobTask, acks_late=True)
def generate(job_id: str) -> str | None:
    """Generate job ``job_id`` (idempotent: safe to deliver more than once)."""
    runtime = current_runtime()
    record = run_job(runtime, job_id)
    if record is None:
        return None
    if record.status.is_terminal and record.webhook_url:
        app.send_task(WEBHOOK_TASK, args=[job_id], queue=WEBHOOK_QUEUE)
    return record.status.value


@app.task(name=WEBHOOK_TASK, bind=True, acks_late=True)
def deliver(self: Task, job_id: str) -> int | None:
    """POST the finished job's summary to its ``webhook_url``; retried with backoff."""
    runtime = current_runtime()
    try:
        return deliver_webhook(runtime, job_id)
    except (UrlRefusedError, UrlFetchError) as exc:
        log.warning("webhook refused", extra={"job_id": job_id, "code": exc.code})
        return None
    except WebhookDeliveryError as exc:
        retries = runtime.settings.worker.webhook_max_retries
        if self.request.retries >= retries:
            log.warning("webhook given up", extra={"job_id": job_id})
            return None
        raise self.retry(exc=exc, countdown=min(2 ** self.request.retries, 300), max_retries=retries) from exc
