"""``/v1/jobs``: every route of the job resource.

Submit a photo, read a job, follow its progress as Server-Sent Events
(``api.job_events``), follow it to its GLB or to any artifact, cancel it, read
and redeliver its webhooks.  Every route with a ``{job_id}`` takes
:data:`~api.auth.JobDep`: the job read once, and only if the caller may see it.

Cancel (``POST /v1/jobs/{id}/cancel``) applies the one cancel rule
(``shared.jobs.cancel``): queued → canceled at once (200); running → the cancel
is requested (202) and the worker ends the job at its next step; running on a
worker whose heartbeat expired → canceled at once (200), as nobody else would;
canceled → 200 again; succeeded or failed → 409 ``job_not_cancelable``.
"""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Body, Header, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.datastructures import UploadFile as StarletteUpload

from api.auth import JobDep, JobLookup, lookup_job
from api.context import ApiContext, ContextDep
from api.idempotency import HEADER as IDEMPOTENCY_HEADER
from api.idempotency import HELP as IDEMPOTENCY_HELP
from api.job_events import job_events_response
from api.job_reads import job_json, json_response
from api.schemas import ErrorBody, JobCreated, JobRead
from api.submission import Submission, parse_options, refuse_multiple_images, submit
from shared.artifacts import remove_partial_artifacts
from shared.errors import (
    InvalidInputError,
    JobNotFoundError,
    JobNotReadyError,
    MissingImageError,
    NoWebhookError,
    UnsupportedMediaTypeError,
)
from shared.heartbeat import is_orphaned_async
from shared.jobs import JobRecord, JobStatus, cancel
from shared.webhooks import EVENTS_HELP as WEBHOOK_EVENTS_HELP
from shared.webhooks import WebhookEvent, fire, read_log, send_delivery

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

OPTIONS_EXAMPLE = {"seed": 43, "stage1_steps": 50, "guidance_scale": 3.0, "stage2_steps": 25,
                   "cfg_strength": 5.0, "texture_size": 1024, "simplify": 0.7}
FORM_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")
JSON_TYPE = "application/json"

BAD_INPUT = {
    400: {"model": ErrorBody, "description": "Neither or both of `image` and `image_url` (`missing_image`); "
          "more than one `image` part (`multiple_images`)."},
    413: {"model": ErrorBody, "description": "Over the byte cap (`payload_too_large`)."},
    415: {"model": ErrorBody, "description": "An image format other than PNG/JPEG/WebP (`unsupported_format`), "
          "or a body that is neither a form nor JSON (`unsupported_media_type`)."},
    422: {
        "model": ErrorBody,
        "description": "`empty_upload`, `invalid_image`, `image_too_large`, `no_foreground`, "
        "`invalid_options`, `url_refused`, `url_fetch_failed`, `invalid_request`.",
    },
    503: {"model": ErrorBody, "description": "The queue cannot be reached (`service_unavailable`)."},
}


class SubmitForm(BaseModel):
    """The form fields of ``POST /v1/jobs`` (multipart, or urlencoded when there is no file)."""

    image: UploadFile | None = Field(None, description="PNG, JPEG or WebP; RGBA cut-outs or opaque photos")
    image_url: str | None = Field(None, description="http(s) URL of the photo instead of an upload")
    options: str | None = Field(None, description="JSON object of generation options",
                                examples=[orjson.dumps(OPTIONS_EXAMPLE).decode()])
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
    def from_form(cls, form: FormData) -> Submission:
        """Validate a parsed form.  Empty text fields and empty file inputs (what a browser sends
        when no file was chosen) count as absent; text where the file belongs is ``invalid_request``;
        more than one ``image`` part is ``multiple_images``."""
        refuse_multiple_images(form)
        given = {
            name: value for name, value in form.items()
            if name in cls.model_fields and value != "" and not _is_empty_file_input(value)
        }
        try:
            fields = cls.model_validate(given)
        except ValidationError as exc:
            raise RequestValidationError(
                [{**err, "loc": ("body", *err["loc"])} for err in exc.errors(include_url=False)]
            ) from None
        return Submission(image=fields.image, image_url=fields.image_url, options=parse_options(fields.options),
                          webhook_url=fields.webhook_url, webhook_events=fields.webhook_events,
                          deliver_to=fields.deliver_to)


def _is_empty_file_input(value: object) -> bool:
    return isinstance(value, StarletteUpload) and value.filename == "" and value.size == 0


class SubmitJson(BaseModel):
    """``POST /v1/jobs`` with a JSON body (as clients of hosted APIs send it): a photo by URL."""

    model_config = ConfigDict(extra="forbid")

    image_url: str | None = Field(None, description="http(s) URL of the photo")
    options: dict[str, Any] | None = Field(None, description="Generation options", examples=[OPTIONS_EXAMPLE])
    webhook_url: str | None = Field(None, description="Called (POST, signed) when the job finishes")
    webhook_events: list[str] | str | None = Field(None, description=WEBHOOK_EVENTS_HELP)
    deliver_to: dict[str, str] | None = Field(
        None, description="Artifact name -> presigned PUT URL of your storage (as the form's `deliver_to`)."
    )

    @classmethod
    def from_body(cls, body: bytes) -> Submission:
        try:
            fields = cls.model_validate_json(body)
        except ValidationError as exc:
            details = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or 'body'}: {err['msg']}" for err in exc.errors()
            )
            raise InvalidInputError(f"invalid JSON body: {details}", code="invalid_request") from None
        return Submission(image_url=fields.image_url, options=parse_options(fields.options),
                          webhook_url=fields.webhook_url, webhook_events=fields.webhook_events,
                          deliver_to=fields.deliver_to)


def _form_schema() -> dict[str, Any]:
    schema = SubmitForm.model_json_schema()
    schema["properties"]["image"] = {"type": "string", "format": "binary",
                                     "description": SubmitForm.model_fields["image"].description}
    return schema


SUBMIT_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {"schema": _form_schema()},
            "application/x-www-form-urlencoded": {"schema": _form_schema()},
            JSON_TYPE: {"schema": SubmitJson.model_json_schema()},
        },
    }
}


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


@router.post(
    "",
    status_code=202,
    response_model=JobCreated,
    summary="Submit a photo of a person; answers at once with the queued job",
    description="A multipart form (`image` file or `image_url`), or a JSON object with `image_url`. "
    "`options` is a JSON object (in a form: its JSON text).",
    responses=BAD_INPUT,
    openapi_extra=SUBMIT_BODY,
)
async def create_job(
    request: Request,
    ctx: ContextDep,
    idempotency_key: Annotated[str | None, Header(alias=IDEMPOTENCY_HEADER, description=IDEMPOTENCY_HELP)] = None,
) -> Response:
    media_type = _media_type(request)
    if media_type in FORM_TYPES:
        async with request.form() as form:
            return await submit(request, ctx, SubmitForm.from_form(form), idempotency_key)
    if media_type == JSON_TYPE:
        return await submit(request, ctx, SubmitJson.from_body(await request.body()), idempotency_key)
    if not media_type and not await request.body():
        raise MissingImageError("send exactly one of `image` (a file) or `image_url`")
    raise UnsupportedMediaTypeError(
        "send the job as multipart/form-data (an `image` file or `image_url`) or as application/json "
        f"(`image_url`), not {media_type or 'a body without Content-Type'}"
    )


@router.get(
    "/{job_id}",
    response_model=JobRead,
    summary="Status, progress, timings and fresh download URLs of one job",
    responses={404: {"model": ErrorBody, "description": "`job_not_found`"}},
)
async def read_job(ctx: ContextDep, job: JobDep) -> Response:
    return json_response(await job_json(ctx, job))


def _redirect_to(ctx: ApiContext, key: str) -> RedirectResponse:
    return RedirectResponse(ctx.storage.download_url(key, ctx.settings.storage.url_ttl_s).url, status_code=302)


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
    request: Request,
    ctx: ContextDep,
    job: JobDep,
    last_event_id: Annotated[str | None, Header(description="Id of the last event received, to resume")] = None,
) -> Response:
    key_id = request.state.key_id

    async def read_job(ctx: ApiContext, job_id: str) -> tuple[JobRecord, dict]:
        lookup = await lookup_job(ctx, job_id, key_id)  # each read as GET answers it, for this caller
        return lookup.record, await job_json(ctx, lookup)

    return await job_events_response(ctx, job.record.id, last_event_id, read_job)


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
async def job_result(ctx: ContextDep, job: JobDep) -> RedirectResponse:
    record = job.record
    key = record.outputs.get("stage2/output.glb")
    if record.status is not JobStatus.succeeded or key is None:
        detail = f": {record.error.message}" if record.error else ""
        raise JobNotReadyError(f"the job is {record.status.value}; no result{detail}")
    return _redirect_to(ctx, key)


@router.get(
    "/{job_id}/artifacts/{name:path}",
    status_code=302,
    summary="Redirect to a fresh download URL of one of a job's files (e.g. stage2/output.glb)",
    responses={404: {"model": ErrorBody}, 409: {"model": ErrorBody}},
)
async def artifact(ctx: ContextDep, job: JobDep, name: str) -> RedirectResponse:
    record = job.record
    if record.status is not JobStatus.succeeded:
        raise JobNotReadyError(f"the job is {record.status.value}; its files are not available")
    key = record.outputs.get(name)
    if key is None:
        raise JobNotFoundError(f"the job has no file {name!r}")
    return _redirect_to(ctx, key)


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
async def cancel_job(ctx: ContextDep, job: JobDep) -> Response:
    before = job.record
    orphaned = before.status is JobStatus.running and await is_orphaned_async(ctx.redis, ctx.store.keys, before)
    ended: list[tuple[JobRecord, JobStatus]] = []  # (canceled record, status it was canceled from)

    def apply(current: JobRecord) -> JobRecord | None:
        new = cancel(current, orphaned=orphaned)
        if new is not None and new.status is JobStatus.canceled:
            ended.append((new, current.status))
        return new

    record = await ctx.store.update(before.id, apply)
    if ended and record is ended[-1][0]:  # this request ended the job
        await run_in_threadpool(fire, ctx.producer, record, WebhookEvent.completed)
        if ended[-1][1] is JobStatus.running:  # an orphan: nobody else removes what its worker uploaded
            await run_in_threadpool(remove_partial_artifacts, ctx.storage, record.id)
    status = 200 if record.status is JobStatus.canceled else 202
    body = await job_json(ctx, JobLookup(record, None, job.job_s))
    return json_response(body, status_code=status)


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
async def webhook_log(ctx: ContextDep, job: JobDep) -> Response:
    record = job.record
    deliveries = await read_log(ctx.redis, ctx.store.keys, record.id)
    return json_response({
        "job_id": record.id,
        "webhook_url": record.webhook_url,
        "webhook_events": record.webhook_events or ["completed"],
        "deliveries": [d.public() for d in deliveries],
    })


@router.post(
    "/{job_id}/webhooks/redeliver",
    status_code=202,
    summary="Send a webhook event again (a new delivery with a fresh body and its own retries)",
    responses={
        404: {"model": ErrorBody, "description": "`job_not_found`"},
        409: {"model": ErrorBody, "description": "`no_webhook`: the job has no webhook, or no event to send yet."},
    },
)
async def redeliver(ctx: ContextDep, job: JobDep, request: RedeliverRequest | None = Body(None)) -> Response:
    record = job.record
    if not record.webhook_url:
        raise NoWebhookError("the job has no webhook_url")
    deliveries = await read_log(ctx.redis, ctx.store.keys, record.id)
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
    delivery_id = await run_in_threadpool(send_delivery, ctx.producer, record.id, event, redelivery_of=previous)
    return json_response({"job_id": record.id, "event": event.value, "delivery_id": delivery_id}, status_code=202)
