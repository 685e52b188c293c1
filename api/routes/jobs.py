"""``/v1/jobs``: submit a photo, read a job, fetch its result, cancel it."""

from __future__ import annotations

import functools
from typing import Annotated

import anyio
import orjson
from fastapi import APIRouter, Form, Header, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response, StreamingResponse
from pydantic import BaseModel, Field, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData

from api.context import ApiContext, ContextDep
from api.image_checks import check_image, decodes_quickly
from api.job_events import job_events_response
from api.security import admit_submission
from api.schemas import ErrorBody, JobCreated, JobRead
from api.idempotency import HEADER as IDEMPOTENCY_HEADER
from api.idempotency import HELP as IDEMPOTENCY_HELP
from api.idempotency import idempotency_keys, replay_response, request_fingerprint
from api.lifecycle import cancel_job as cancel_or_request_cancel
from api.url_fetch import fetch_image
from shared import url_policy
from shared.deliveries import ArtifactDelivery, parse_deliver_to
from shared.job_view import job_body
from shared.webhooks import EVENTS_HELP as WEBHOOK_EVENTS_HELP
from shared.webhooks import parse_events
from shared.errors import (
    InvalidOptionsError,
    JobNotReadyError,
    MissingImageError,
    MultipleImagesError,
    PayloadTooLargeError,
    ServiceUnavailableError,
)
from shared.jobs import JobRecord, JobStatus, new_job_id
from shared.options import GenerationOptions
from shared.queue import GENERATE_TASK, GPU_QUEUE

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

INLINE_CHECK_BYTES = 512 * 1024
"""Uploads up to this size are checked on the event loop if they also have few pixels
(:func:`api.image_checks.decodes_quickly`); the others in a thread."""

OPTIONS_EXAMPLE = '{"seed": 43, "stage1_steps": 50, "guidance_scale": 3.0, "stage2_steps": 25, "cfg_strength": 5.0, "texture_size": 1024, "simplify": 0.7}'

BAD_INPUT = {
    400: {"model": ErrorBody, "description": "Neither or both of `image` and `image_url` (`missing_image`); "
          "more than one `image` part (`multiple_images`)."},
    413: {"model": ErrorBody, "description": "Over the byte cap (`payload_too_large`)."},
    415: {"model": ErrorBody, "description": "An image format other than PNG/JPEG/WebP (`unsupported_format`)."},
    422: {
        "model": ErrorBody,
        "description": "`empty_upload`, `invalid_image`, `image_too_large`, `no_foreground`, "
        "`invalid_options`, `url_refused`, `url_fetch_failed`, `invalid_request`.",
    },
    503: {"model": ErrorBody, "description": "The queue cannot be reached (`service_unavailable`)."},
}


@functools.cache
def _heavy_checks() -> anyio.CapacityLimiter:
    """One large photo decoded at a time per API process: each takes a core and up to
    ``max_pixels`` x 4 bytes of memory, and the event loop keeps the other core."""
    return anyio.CapacityLimiter(1)


def _links(job_id: str) -> dict[str, str]:
    base = f"/v1/jobs/{job_id}"
    return {"self": base, "result": f"{base}/result", "cancel": f"{base}/cancel"}


def _parse_options(raw: str | None) -> GenerationOptions:
    if raw is None or not raw.strip():
        return GenerationOptions()
    try:
        return GenerationOptions.model_validate_json(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'options'}: {err['msg']}" for err in exc.errors()
        )
        raise InvalidOptionsError(f"invalid options: {problems}") from None


class SubmitForm(BaseModel):
    """The form fields of ``POST /v1/jobs`` (multipart, or urlencoded when there is no file)."""

    image: UploadFile | None = Field(None, description="PNG, JPEG or WebP; RGBA cut-outs or opaque photos")
    image_url: str | None = Field(None, description="http(s) URL of the photo instead of an upload")
    options: str | None = Field(None, description="JSON object of generation options", examples=[OPTIONS_EXAMPLE])
    webhook_url: str | None = Field(None, description="Called (POST, signed) when the job finishes")
    webhook_events: str | None = Field(None, description=WEBHOOK_EVENTS_HELP, examples=["started,completed"])
    deliver_to: str | None = Field(
        None,
        description="JSON object: artifact name -> presigned PUT URL of your storage. Once the job succeeded "
        "each named artifact is uploaded there (retried with backoff; the job's `deliveries` shows each "
        "outcome; the job succeeds even if an upload fails). URLs follow `image_url`'s rules.",
        examples=['{"stage2/output.glb": "https://my-bucket.s3.amazonaws.com/model.glb?X-Amz-Signature=..."}'],
    )

    @classmethod
    def from_form(cls, form: FormData) -> SubmitForm:
        """Validate a parsed form as FastAPI does for this model.

        Empty text fields and empty file inputs (what a browser sends when no
        file was chosen) count as absent; a field of the wrong kind (text
        where a file belongs) is a ``RequestValidationError`` with the same
        ``body.<field>`` location FastAPI reports.
        """
        refuse_multiple_images(form)
        given = {
            name: value for name, value in form.items()
            if name in cls.model_fields and value != "" and not _is_empty_file_input(value)
        }
        try:
            return cls.model_validate(given)
        except ValidationError as exc:
            raise RequestValidationError(
                [{**err, "loc": ("body", *err["loc"])} for err in exc.errors(include_url=False)]
            ) from None


def refuse_multiple_images(form: FormData) -> None:
    """Raise ``multiple_images`` for a form with more than one ``image`` part (never pick one silently)."""
    if len(form.getlist("image")) > 1:
        raise MultipleImagesError("send one `image` part; this request has several")


def _is_empty_file_input(value: object) -> bool:
    return isinstance(value, UploadFile) and value.filename == "" and value.size == 0


@router.post(
    "",
    status_code=202,
    response_model=JobCreated,
    summary="Submit a photo of a person; answers at once with the queued job",
    responses=BAD_INPUT,
)
async def create_job(
    request: Request,
    ctx: ContextDep,
    form: Annotated[SubmitForm, Form(media_type="multipart/form-data")],
    idempotency_key: Annotated[str | None, Header(alias=IDEMPOTENCY_HEADER, description=IDEMPOTENCY_HELP)] = None,
) -> Response:
    """Form bodies are answered by :func:`api.fast_submit.submit_form` ahead of this route,
    which documents the endpoint and answers every other content type."""
    return await submit_job(request, ctx, form, idempotency_key)


async def submit_job(request: Request, ctx: ApiContext, form: SubmitForm, idempotency_key: str | None) -> Response:
    """Check the photo, store it, create the job and queue it; the 202 answer.

    With an ``Idempotency-Key`` the key is reserved before anything else
    counts: a replay answers with the earlier job without spending a
    rate-limit token, and a submission that fails after the reservation
    (refused by the limits, storage or queue down) releases the key, so the
    client's retry with the same key is a new attempt, not a replay of a job
    that never existed.
    """
    settings = ctx.settings.api
    image, image_url, webhook_url = form.image, form.image_url, form.webhook_url
    if (image is None) == (not image_url):
        raise MissingImageError("send exactly one of `image` (a file) or `image_url`")
    parsed = _parse_options(form.options)
    events = parse_events(form.webhook_events) if webhook_url else []
    if webhook_url:
        await run_in_threadpool(url_policy.resolve_allowed, webhook_url, ctx.settings.webhooks.allow_hosts)
    deliver_to = parse_deliver_to(form.deliver_to, parsed.formats)
    for url in deliver_to.values():
        await run_in_threadpool(url_policy.resolve_allowed, url, settings.url_fetch_allow_hosts)
    if image is not None:
        if image.size is not None and image.size > settings.max_upload_bytes:
            raise PayloadTooLargeError(f"the image is larger than {settings.max_upload_bytes} bytes")
        data = await image.read(settings.max_upload_bytes + 1)
    else:
        data = await fetch_image(image_url, settings)
    if len(data) <= INLINE_CHECK_BYTES and decodes_quickly(data):
        checked = check_image(data, settings)
    else:
        checked = await anyio.to_thread.run_sync(check_image, data, settings, limiter=_heavy_checks())

    owner, job_id = request.state.key_id, new_job_id()
    record = JobRecord(
        id=job_id,
        options=parsed.model_dump(),
        input_key=f"jobs/{job_id}/input.png",
        webhook_url=webhook_url or None,
        webhook_events=events,
        owner=owner,
        deliver_to=deliver_to,
        deliveries={name: ArtifactDelivery() for name in deliver_to},
    )
    if idempotency_key:
        fields = {"options": record.options, "webhook_url": webhook_url, "webhook_events": events,
                  "deliver_to": deliver_to}
        fingerprint = request_fingerprint(data if image is not None else None, image_url, **fields)
        earlier = await idempotency_keys(ctx).reserve(idempotency_key, fingerprint, record.id, owner=owner)
        if earlier is not None:
            return await replay_response(ctx, earlier, read_job_body)
    try:
        await admit_submission(request, ctx, record.id)
        position = await _store_and_queue(ctx, record, checked.png)
    except BaseException:
        if idempotency_key:
            await idempotency_keys(ctx).release(idempotency_key, owner=owner)
        raise
    body = {"id": record.id, "status": JobStatus.queued.value, "queue_position": position, "links": _links(record.id)}
    return Response(orjson.dumps(body), status_code=202, media_type="application/json",
                    headers={"Location": f"/v1/jobs/{record.id}"})


async def _store_and_queue(ctx: ApiContext, record: JobRecord, png: bytes) -> int:
    """Store the photo, then write the record and its queue message; the queue position."""
    await ctx.storage.put_bytes_async(record.input_key, png, "image/png")
    message = await ctx.generate_message(record.id)
    position = await ctx.store.create(record, message=message)
    if message is None:
        try:
            await run_in_threadpool(_enqueue, ctx, record.id)
        except Exception as exc:
            await ctx.store.delete(record.id)
            raise ServiceUnavailableError("the job queue cannot be reached; try again") from exc
    return position


def _enqueue(ctx: ApiContext, job_id: str) -> None:
    """Send the task message separately (only when the broker is not the job store's Redis)."""
    ctx.producer.send_task(GENERATE_TASK, args=[job_id], task_id=job_id, queue=GPU_QUEUE)


def _eta(record: JobRecord, position: int | None, job_s: float | None, workers: int, default_s: float) -> float | None:
    per_job = job_s or default_s
    if record.status is JobStatus.queued and position is not None:
        return round(per_job * (1 + (position - 1) / max(workers, 1)), 1)
    if record.status is JobStatus.running:
        return round(per_job * (1 - record.progress / 100.0), 1)
    return None


async def read_job_body(ctx: ApiContext, job_id: str) -> tuple[JobRecord, dict]:
    record, position, job_s = await ctx.store.get_with_position(job_id)
    eta = None
    if not record.status.is_terminal:
        workers = len(await ctx.workers())
        eta = _eta(record, position, job_s, workers, ctx.settings.jobs.default_job_s)
    body = job_body(record, ctx.storage, ctx.settings.storage.url_ttl_s, queue_position=position, eta_s=eta)
    return record, body


@router.get(
    "/{job_id}",
    response_model=JobRead,
    summary="Status, progress, timings and fresh download URLs of one job",
    responses={404: {"model": ErrorBody, "description": "`job_not_found`"}},
)
async def read_job(ctx: ContextDep, job_id: str) -> JSONResponse:
    _, body = await read_job_body(ctx, job_id)
    return JSONResponse(body)


@router.get(
    "/{job_id}/events",
    summary="Follow a job as Server-Sent Events: one event per change, then the finished job",
    response_class=StreamingResponse,
    responses={
        200: {
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
            "description": "`update` events (the job as GET answers it, at most about 4 a second, one per "
            "change of status, stage, progress or queue position), then one `done` event with the finished "
            "job; then the stream closes. Reconnect with `Last-Event-ID` to resume after that event.",
        },
        204: {"description": "`Last-Event-ID` is the job's `done` event: nothing more will come."},
        404: {"model": ErrorBody, "description": "`job_not_found`"},
    },
)
async def job_events(
    ctx: ContextDep,
    job_id: str,
    last_event_id: Annotated[str | None, Header(description="Id of the last event received, to resume")] = None,
) -> Response:
    return await job_events_response(ctx, job_id, last_event_id, read_job_body)


@router.get(
    "/{job_id}/result",
    status_code=302,
    summary="Redirect to the GLB once the job succeeded",
    responses={
        302: {"description": "`Location` is a fresh URL of stage2/output.glb."},
        404: {"model": ErrorBody, "description": "`job_not_found`"},
        409: {"model": ErrorBody, "description": "`job_not_ready`: queued, running, failed or canceled."},
    },
)
async def job_result(ctx: ContextDep, job_id: str) -> RedirectResponse:
    record, _, _ = await ctx.store.get_with_position(job_id)
    key = record.outputs.get("stage2/output.glb")
    if record.status is not JobStatus.succeeded or key is None:
        detail = f": {record.error.message}" if record.error else ""
        raise JobNotReadyError(f"the job is {record.status.value}; no result{detail}")
    link = ctx.storage.download_url(key, ctx.settings.storage.url_ttl_s)
    return RedirectResponse(link.url, status_code=302)


@router.post(
    "/{job_id}/cancel",
    status_code=202,
    response_model=JobRead,
    summary="Cancel a job: queued jobs stop at once (200), running ones at their next step (202)",
    responses={
        200: {"model": JobRead, "description": "Canceled (now, or already before: idempotent)."},
        404: {"model": ErrorBody, "description": "`job_not_found`"},
        409: {"model": ErrorBody, "description": "`job_not_cancelable`: the job already succeeded or failed."},
    },
)
async def cancel_job(ctx: ContextDep, job_id: str) -> JSONResponse:
    _, status = await cancel_or_request_cancel(ctx, job_id)
    _, body = await read_job_body(ctx, job_id)
    return JSONResponse(body, status_code=status)


__all__ = ["router"]
