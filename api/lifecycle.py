"""Cancelling a job, and the log and redelivery of its webhooks.

Cancel (``POST /v1/jobs/{id}/cancel``):

* queued → canceled at once (200); the worker skips the message when it arrives;
* running → the cancel is requested (202); the worker's step callback raises at
  the next denoising step, the partial artifacts are removed, the job ends canceled;
* canceled → 200 again (idempotent);
* succeeded or failed → 409 ``job_not_cancelable``.

A job canceled here (from the queue) fires its ``completed`` webhook from the
API; one canceled while running fires it from the worker.
"""

from __future__ import annotations

from fastapi import APIRouter, Body
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from api.context import ApiContext, ContextDep
from api.schemas import ErrorBody
from shared.errors import JobNotCancelableError, NoWebhookError
from shared.jobs import JobRecord, JobStatus, transition
from shared.webhooks import WebhookEvent, fire, read_log, send_delivery

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])


async def cancel_job(ctx: ApiContext, job_id: str) -> tuple[JobRecord, int]:
    """Cancel (or request the cancel of) a job; returns its record and the HTTP status to answer."""
    seen: list[JobStatus] = []

    def cancel(record: JobRecord) -> JobRecord | None:
        seen.append(record.status)
        if record.status in (JobStatus.succeeded, JobStatus.failed):
            raise JobNotCancelableError(f"the job already {record.status.value}; it cannot be canceled")
        if record.status is JobStatus.queued:
            return transition(record, JobStatus.canceled)
        if record.status is JobStatus.running and not record.cancel_requested:
            return record.model_copy(update={"cancel_requested": True})
        return None

    record = await ctx.store.update(job_id, cancel)
    if record.status is JobStatus.canceled:
        if seen[-1] is JobStatus.queued:
            await run_in_threadpool(fire, ctx.producer, record, WebhookEvent.completed)
        return record, 200
    return record, 202


class DeliveryList(BaseModel):
    job_id: str
    webhook_url: str | None
    webhook_events: list[str]
    deliveries: list[dict] = Field(description="Every delivery, oldest first, with its attempts and next retry.")


class RedeliverRequest(BaseModel):
    event: WebhookEvent | None = Field(
        None, description="Event to send again; default: the latest event delivered (or `completed`)."
    )


@router.get(
    "/{job_id}/webhooks",
    response_model=DeliveryList,
    summary="The job's webhook deliveries: attempts, status codes, next retry",
    responses={404: {"model": ErrorBody, "description": "`job_not_found`"}},
)
async def webhook_log(ctx: ContextDep, job_id: str) -> JSONResponse:
    record, _, _ = await ctx.store.get_with_position(job_id)
    deliveries = await read_log(ctx.redis, ctx.store.keys, job_id)
    body = {
        "job_id": job_id,
        "webhook_url": record.webhook_url,
        "webhook_events": record.webhook_events or ["completed"],
        "deliveries": [d.public() for d in deliveries],
    }
    return JSONResponse(body)


@router.post(
    "/{job_id}/webhooks/redeliver",
    status_code=202,
    summary="Send a webhook event again (a new delivery with a fresh body and its own retries)",
    responses={
        404: {"model": ErrorBody, "description": "`job_not_found`"},
        409: {"model": ErrorBody, "description": "`no_webhook`: the job has no webhook, or no event to send yet."},
    },
)
async def redeliver(ctx: ContextDep, job_id: str, request: RedeliverRequest | None = Body(None)) -> JSONResponse:
    record, _, _ = await ctx.store.get_with_position(job_id)
    if not record.webhook_url:
        raise NoWebhookError("the job has no webhook_url")
    deliveries = await read_log(ctx.redis, ctx.store.keys, job_id)
    event = request.event if request else None
    if event is None:
        if deliveries:
            event = deliveries[-1].event
        elif record.status.is_terminal:
            event = WebhookEvent.completed
        else:
            raise NoWebhookError("no webhook event has fired for this job yet")
    if event is WebhookEvent.completed and not record.status.is_terminal:
        raise NoWebhookError("the job has not completed yet")
    previous = next((d.id for d in reversed(deliveries) if d.event is event), None)
    delivery_id = await run_in_threadpool(send_delivery, ctx.producer, job_id, event, redelivery_of=previous)
    return JSONResponse({"job_id": job_id, "event": event.value, "delivery_id": delivery_id}, status_code=202)


__all__ = ["cancel_job", "router"]
