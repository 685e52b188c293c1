"""Turning one request into a queued job: the steps ``POST /v1/jobs`` and ``/generate`` share.

1. exactly one of an uploaded ``image`` or an ``image_url`` (fetched under the SSRF policy);
2. the options (:class:`~shared.options.GenerationOptions`, strict), the webhook (checked URL,
   events) and the ``deliver_to`` URLs (checked like ``image_url``);
3. the photo check (size, format, pixels, decode, orientation, foreground), large photos one at
   a time in a thread;
4. with an ``Idempotency-Key``: the key reserved (a replay answers the earlier job);
5. admission (per-key limits, queue cap), then the photo stored, then the record and its
   queue message written in one script.

A submission that fails after reserving its key (refused by the limits, storage or
queue down) releases it, so the client's retry is a new attempt, not a replay of a
job that never existed.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import anyio
import orjson
from fastapi import Request, UploadFile
from fastapi.responses import Response
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData

from api.admission import admit_submission
from api.context import ApiContext
from api.idempotency import idempotency_keys, replay_response, request_fingerprint
from api.image_checks import check_image, decodes_quickly
from api.url_fetch import fetch_image
from shared import url_policy
from shared.artifacts import input_key
from shared.deliveries import ArtifactDelivery, parse_deliver_to
from shared.errors import (
    InvalidOptionsError,
    MissingImageError,
    MultipleImagesError,
    PayloadTooLargeError,
    ServiceUnavailableError,
)
from shared.job_view import job_links
from shared.jobs import JobRecord, JobStatus, new_job_id
from shared.options import GenerationOptions
from shared.queue import GENERATE_TASK, GPU_QUEUE
from shared.webhooks import parse_events

INLINE_CHECK_BYTES = 512 * 1024
"""Uploads up to this size are checked on the event loop if they also have few pixels
(:func:`api.image_checks.decodes_quickly`); the others in a thread."""


@dataclass
class Submission:
    """What a client asked for, whichever body carried it."""

    image: UploadFile | None = None
    image_url: str | None = None
    options: GenerationOptions = field(default_factory=GenerationOptions)
    webhook_url: str | None = None
    webhook_events: list[str] | str | None = None
    deliver_to: str | dict[str, str] | None = None
    """Artifact name -> presigned PUT URL (a JSON text from a form, an object from a JSON body)."""


@functools.cache
def _heavy_checks() -> anyio.CapacityLimiter:
    """One large photo decoded at a time per API process: each takes a core and up to
    ``max_pixels`` x 4 bytes of memory, and the event loop keeps the other core."""
    return anyio.CapacityLimiter(1)


def parse_options(raw: str | bytes | dict | None) -> GenerationOptions:
    """The options of a request (a JSON text or an object), strictly; ``invalid_options`` otherwise."""
    try:
        if raw is None or (isinstance(raw, (str, bytes)) and not raw.strip()):
            return GenerationOptions()
        if isinstance(raw, dict):
            return GenerationOptions.model_validate(raw)
        return GenerationOptions.model_validate_json(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'options'}: {err['msg']}" for err in exc.errors()
        )
        raise InvalidOptionsError(f"invalid options: {problems}") from None


def refuse_multiple_images(form: FormData) -> None:
    """Raise ``multiple_images`` for a form with more than one ``image`` part (never pick one silently)."""
    if len(form.getlist("image")) > 1:
        raise MultipleImagesError("send one `image` part; this request has several")


async def submit(request: Request, ctx: ApiContext, submission: Submission, idempotency_key: str | None) -> Response:
    """Check, store and queue one job; the 202 answer (200 for an idempotent replay)."""
    settings = ctx.settings.api
    image, image_url, webhook_url = submission.image, submission.image_url, submission.webhook_url
    if (image is None) == (not image_url):
        raise MissingImageError("send exactly one of `image` (a file) or `image_url`")
    events = parse_events(submission.webhook_events) if webhook_url else []
    if webhook_url:
        await run_in_threadpool(url_policy.resolve_allowed, webhook_url, ctx.settings.webhooks.allow_hosts)
    deliver_to = parse_deliver_to(submission.deliver_to, submission.options.formats)
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
        options=submission.options.model_dump(),
        input_key=input_key(job_id),
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
            return await replay_response(ctx, earlier)
    try:
        await admit_submission(request, ctx, record.id)
        position = await _store_and_queue(ctx, record, checked.png)
    except BaseException:
        if idempotency_key:
            await idempotency_keys(ctx).release(idempotency_key, owner=owner)
        raise
    body = {"id": record.id, "status": JobStatus.queued.value, "queue_position": position, "links": job_links(record.id)}
    return Response(orjson.dumps(body), status_code=202, media_type="application/json",
                    headers={"Location": f"/v1/jobs/{record.id}"})


async def _store_and_queue(ctx: ApiContext, record: JobRecord, png: bytes) -> int:
    """Store the photo, then write the record and its queue message; the queue position."""
    await ctx.storage.put_bytes_async(record.input_key, png, "image/png")
    message = await ctx.generate_message(record.id)
    position = await ctx.store.create(record, message=message)
    if message is None:
        try:
            await run_in_threadpool(send_generate, ctx, record.id)
        except Exception as exc:
            await ctx.store.delete(record.id)
            raise ServiceUnavailableError("the job queue cannot be reached; try again") from exc
    return position


def send_generate(ctx: ApiContext, job_id: str) -> None:
    """Send the job's task message with Celery (when the broker is not the job store's Redis,
    and for a job the API gives back to the queue)."""
    ctx.producer.send_task(GENERATE_TASK, args=[job_id], task_id=job_id, queue=GPU_QUEUE)
