"""Thin Celery tasks: they take ids and call into the runtime."""

from __future__ import annotations

import logging

from celery import Task
from celery.exceptions import Reject

from shared.errors import JobNotFoundError
from shared.jobs import JobError, JobStatus
from shared.queue import DELIVERY_TASK, GENERATE_TASK, WEBHOOK_TASK
from shared.webhooks import WebhookEvent
from worker.celery_app import app
from worker.deliveries import fire_deliveries, upload
from worker.generation import run_job
from worker.runtime import current_runtime
from worker.webhooks import deliver, delivery_context, fire_event

log = logging.getLogger("synchuman.worker")


class JobTask(Task):
    """Keeps the job record truthful if a task body fails outside ``run_job``'s handling."""

    def on_failure(self, exc, task_id, args, kwargs, einfo) -> None:  # noqa: ANN001 - Celery's signature
        job_id = args[0] if args else kwargs.get("job_id")
        if not job_id:
            return
        log.error("job task failed", extra={"job_id": job_id, "error": type(exc).__name__}, exc_info=exc)
        error = JobError(code="internal_error", message="the worker failed on this job; the details are in its log",
                         retryable=True)

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
    finished_before = _is_finished(runtime, job_id)
    record = run_job(runtime, job_id)
    if record is None:
        return None
    if runtime.shutting_down.is_set() and not record.status.is_terminal:
        raise Reject("the worker is shutting down; job requeued", requeue=True)
    if record.status.is_terminal and not finished_before:
        fire_event(record, WebhookEvent.completed, app)
        if record.status is JobStatus.succeeded:
            fire_deliveries(record, app)
    return record.status.value


def _is_finished(runtime, job_id: str) -> bool:  # noqa: ANN001 - WorkerRuntime
    """Whether the job was already terminal before this message (then its webhook already fired)."""
    try:
        return runtime.store.get(job_id).status.is_terminal
    except JobNotFoundError:
        return True


@app.task(name=WEBHOOK_TASK, bind=True, acks_late=True)
def deliver_webhook(
    self: Task, job_id: str, event: str, delivery_id: str, attempt: int = 1, redelivery_of: str | None = None
) -> str | None:
    """One attempt of one webhook delivery (``worker.webhooks.deliver``); it queues its own retries."""
    delivery = deliver(delivery_context(), self.app, job_id, event, delivery_id, attempt, redelivery_of=redelivery_of)
    return delivery.state.value if delivery else None


@app.task(name=DELIVERY_TASK, bind=True, acks_late=True)
def upload_artifact(self: Task, job_id: str, name: str, attempt: int = 1) -> str | None:
    """One attempt of one upload to a ``deliver_to`` URL (``worker.deliveries.upload``); it queues its own retries."""
    delivery = upload(delivery_context(), self.app, job_id, name, attempt)
    return delivery.state.value if delivery else None
