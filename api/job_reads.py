"""A job as ``GET /v1/jobs/{id}`` answers it: the public view plus queue position and ETA."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi.responses import Response

from api.auth import JobLookup
from api.context import ApiContext
from shared.job_view import job_body
from shared.jobs import JobRecord, JobStatus


def estimate_eta(record: JobRecord, position: int | None, job_s: float | None, workers: int, default_s: float) -> float | None:
    """Seconds until the job is likely done: its place in the queue spread over the live workers,
    or the rest of its own run."""
    per_job = job_s or default_s
    if record.status is JobStatus.queued and position is not None:
        return round(per_job * (1 + (position - 1) / max(workers, 1)), 1)
    if record.status is JobStatus.running:
        return round(per_job * (1 - record.progress / 100.0), 1)
    return None


async def job_json(ctx: ApiContext, job: JobLookup) -> dict[str, Any]:
    """The job's JSON body: fresh download URLs, queue position and ETA."""
    record = job.record
    eta = None
    if not record.status.is_terminal:
        workers = len(await ctx.workers())
        eta = estimate_eta(record, job.position, job.job_s, workers, ctx.settings.jobs.default_job_s)
    return job_body(record, ctx.storage, ctx.settings.storage.url_ttl_s, queue_position=job.position, eta_s=eta)


def json_response(body: Any, status_code: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status_code=status_code, media_type="application/json", headers=headers)
