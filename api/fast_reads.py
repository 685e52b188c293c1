"""``GET /v1/jobs/{id}`` answered ahead of FastAPI's routing and dependency machinery.

Clients poll this one route far more often than anything else, and FastAPI's
per-request work around it (matching every route, solving the app-wide and the
route's dependencies, its exception layers) costs about as much as reading the
job itself: measured with ``bench/bench_api.py`` on one core, 0.27 against
0.53 ms of API CPU per poll of a queued job, 0.48 against 0.70 ms for a
succeeded one with 17 URLs.  So this ASGI layer answers the poll itself when
everything goes right, with the route's own steps (``api.auth.caller_key_id``,
``api.auth.lookup_job``, ``api.job_reads.job_json``) and therefore the same
bytes; ``tests/api/test_fast_reads.py`` checks that it does, with
authentication on and off.

Anything else passes through untouched to the application, which answers as
the documented route (``api.routes.jobs.read_job``) does: other paths and
methods, unknown or foreign jobs (404), a missing or wrong key (401), Redis
errors (503).  ``api.fast_job_reads=false`` turns the layer off.
"""

from __future__ import annotations

import orjson
import redis
from starlette.types import ASGIApp, Receive, Scope, Send

from api.auth import caller_key_id, lookup_job
from api.job_reads import job_json
from shared.errors import ServiceError

JOBS_PREFIX = "/v1/jobs/"


def _job_id_of(scope: Scope) -> str | None:
    """The id of a ``GET /v1/jobs/{id}`` request, else None."""
    if scope["type"] != "http" or scope["method"] != "GET":
        return None
    path = scope["path"]
    if not path.startswith(JOBS_PREFIX):
        return None
    job_id = path[len(JOBS_PREFIX):]
    return job_id if job_id and "/" not in job_id else None


def _authorization(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"authorization":
            return value.decode("latin-1")
    return None


class JobReadFastPath:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        job_id = _job_id_of(scope)
        body = await self._answer(scope, job_id) if job_id is not None else None
        if body is None:
            await self.app(scope, receive, send)
            return
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", str(len(body)).encode()), (b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body})

    async def _answer(self, scope: Scope, job_id: str) -> bytes | None:
        """The body of a successful read, or None to let the application answer."""
        ctx = scope["app"].state.context
        try:
            key_id = await caller_key_id(ctx, scope["path"], _authorization(scope))
            return orjson.dumps(await job_json(ctx, await lookup_job(ctx, job_id, key_id)))
        except (redis.RedisError, ServiceError):
            return None
