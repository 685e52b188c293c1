"""The synchronous API existing SyncHuman users already call: ``POST /generate``.

Same request fields and answer keys as the servers their scripts were written
for (``result['stage1']['output_dir']``, ``result['stage2']['output_dir']``,
a zip with ``stage1/``, ``stage2/`` and ``results_metadata.json``), but run
through the job queue:

* ``POST /generate`` submits an ordinary job and waits for it with
  ``asyncio.sleep`` between reads of the job record, so the event loop stays
  free (``/health`` answers at once while jobs run);
* every parameter is applied (they become the job's options, validated as
  ``POST /v1/jobs`` validates them);
* a client that disconnects only stops the waiting: the job goes on, and its id
  can be polled at ``/v1/jobs/{id}``;
* past ``api.generate_timeout_s`` it answers 504 with the job id;
* errors are JSON with a stable code (``{"error": {...}}``), never a traceback.

``output_dir`` is a URL base: ``{output_dir}/{file}`` (for example
``…/stage2/output.glb``) redirects to a fresh download URL of that file
(``GET /v1/jobs/{id}/artifacts/{name}``).
"""

from __future__ import annotations

import asyncio
import time
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from api.context import ApiContext, ContextDep
from api.errors import error_body
from api.schemas import ErrorBody
from api.submission import Submission, parse_options, refuse_multiple_images, submit
from shared import errors as e
from shared.job_view import job_body, job_links
from shared.jobs import JobRecord, JobStatus

router = APIRouter(tags=["synchronous API"])

POLL_INTERVAL_S = 0.2
"""Time between two reads of the job record while ``/generate`` waits."""


def _codes_of(cls: type[e.ServiceError]) -> frozenset[str]:
    return frozenset({cls.code}).union(*(_codes_of(sub) for sub in cls.__subclasses__()))


INPUT_ERROR_CODES = _codes_of(e.InvalidInputError)
"""Job error codes that are the input's fault (answered 422, not 500)."""


def artifact_base(request: Request, job_id: str) -> str:
    """URL base of a job's files: ``{base}/stage2/output.glb`` redirects to that file."""
    return f"{str(request.base_url).rstrip('/')}/v1/jobs/{job_id}/artifacts"


def describe_result(request: Request, ctx: ApiContext, record: JobRecord) -> dict[str, Any]:
    """The JSON answer of ``/generate`` for a job that succeeded."""
    body = job_body(record, ctx.storage, ctx.settings.storage.url_ttl_s)
    base = artifact_base(request, record.id)
    stages: dict[str, Any] = {}
    for stage in ("stage1", "stage2"):
        files = {
            name.split("/", 1)[1]: link["url"] for name, link in body["outputs"].items() if name.startswith(f"{stage}/")
        }
        stages[stage] = {"output_dir": f"{base}/{stage}", "files": files} if files else None
    zip_link = body["outputs"].get("results.zip")
    return {
        "status": "success",
        "job_id": record.id,
        "stage1": stages["stage1"],
        "stage2": stages["stage2"],
        "results_zip": zip_link["url"] if zip_link else None,
        "parameters": record.options,
        "pipeline": record.pipeline,
        "timings": record.timings,
        "links": job_links(record.id),
    }


async def wait_for_job(ctx: ApiContext, request: Request, job_id: str, timeout_s: float) -> JobRecord | None:
    """The job's record once it is terminal; None if the client went away first.

    Raises :class:`~shared.errors.WaitTimeoutError` after ``timeout_s``.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        record, _, _ = await ctx.store.get_with_position(job_id)
        if record.status.is_terminal:
            return record
        if await request.is_disconnected():
            return None
        if time.monotonic() >= deadline:
            raise e.WaitTimeoutError(
                f"the job did not finish within {timeout_s:g} s; it goes on: poll /v1/jobs/{job_id}", job_id=job_id
            )
        await asyncio.sleep(POLL_INTERVAL_S)


def _failure(record: JobRecord) -> JSONResponse:
    if record.status is JobStatus.canceled:
        code, message, status = "canceled", "the job was canceled", 409
    else:
        error = record.error
        code = error.code if error else "internal_error"
        message = error.message if error else "the job failed"
        status = 422 if code in INPUT_ERROR_CODES else 500
    body = error_body(code, message, bool(record.error and record.error.retryable))
    body["job_id"] = record.id
    return JSONResponse(body, status_code=status)


@router.post(
    "/generate",
    summary="Synchronous generation (existing clients): submit, wait, answer the result",
    responses={
        200: {"description": "JSON describing stage1 and stage2 outputs, or with `download=true` a zip."},
        400: {"model": ErrorBody, "description": "Neither or both of `image` and `image_url` (`missing_image`); "
              "more than one `image` part (`multiple_images`)."},
        409: {"model": ErrorBody, "description": "`canceled`: the job was canceled while the request waited."},
        422: {"model": ErrorBody, "description": "Bad input (same codes as `POST /v1/jobs`)."},
        500: {"model": ErrorBody, "description": "The pipeline failed (`pipeline_error`, `worker_lost`)."},
        504: {"model": ErrorBody, "description": "`timeout`: the job goes on; `job_id` says which one to poll."},
    },
)
async def generate(
    request: Request,
    ctx: ContextDep,
    image: Annotated[UploadFile | None, File(description="PNG (RGBA cut-out), JPEG or WebP")] = None,
    image_url: Annotated[str | None, Form(description="http(s) URL of the photo instead of an upload")] = None,
    stage1_only: Annotated[bool, Form(description="Stop after the five views (no mesh)")] = False,
    stage1_steps: Annotated[int | None, Form()] = None,
    stage2_steps: Annotated[int | None, Form()] = None,
    seed: Annotated[int | None, Form()] = None,
    guidance_scale: Annotated[float | None, Form()] = None,
    cfg_strength: Annotated[float | None, Form()] = None,
    texture_size: Annotated[int | None, Form()] = None,
    simplify: Annotated[float | None, Form()] = None,
    download: Annotated[bool, Form(description="Answer the results zip instead of JSON")] = False,
    timeout_s: Annotated[float | None, Form(gt=0, description="Seconds to wait (at most api.generate_timeout_s)")] = None,
) -> Response:
    knobs = {
        "stage1_steps": stage1_steps,
        "stage2_steps": stage2_steps,
        "seed": seed,
        "guidance_scale": guidance_scale,
        "cfg_strength": cfg_strength,
        "texture_size": texture_size,
        "simplify": simplify,
    }
    options: dict[str, Any] = {name: value for name, value in knobs.items() if value is not None}
    if stage1_only:
        options["stage1_only"] = True
    refuse_multiple_images(await request.form())  # parsed once already: FastAPI keeps the form
    submission = Submission(image=image, image_url=image_url, options=parse_options(options))
    created = await submit(request, ctx, submission, idempotency_key=None)
    job_id = orjson.loads(created.body)["id"]
    limit = ctx.settings.api.generate_timeout_s
    try:
        record = await wait_for_job(ctx, request, job_id, min(timeout_s or limit, limit))
    except e.WaitTimeoutError as exc:
        body = error_body(exc.code, exc.message, exc.retryable)
        body["job_id"] = job_id
        body["links"] = job_links(job_id)
        return JSONResponse(body, status_code=504, headers={"Location": f"/v1/jobs/{job_id}"})
    if record is None:  # the client left; the job goes on
        return Response(status_code=499)
    if record.status is not JobStatus.succeeded:
        return _failure(record)
    if download:
        key = record.outputs.get("results.zip")
        if key is None:
            raise e.JobNotReadyError("the job has no results zip")
        data = await run_in_threadpool(ctx.storage.get_bytes, key)
        disposition = f'attachment; filename="synchuman_{job_id}.zip"'
        return Response(data, media_type="application/zip", headers={"Content-Disposition": disposition})
    return JSONResponse(describe_result(request, ctx, record))
