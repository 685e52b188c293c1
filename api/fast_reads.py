"""``GET /v1/jobs/{id}`` without FastAPI's routing and dependency machinery.

Clients poll this one route far more often than anything else, and FastAPI's
per-request work (route matching over every route, dependency solving,
exception-handling layers) costs several times what reading the job does.
This ASGI layer answers the poll directly when everything goes right: the job
exists and, with authentication on, the bearer key is valid and owns it.  The
answer is the same body the route builds (``api.routes.jobs.read_job_body``).

Anything else passes through untouched to the full application, which then
answers exactly as before: other paths and methods, unknown jobs (404), a
missing or wrong key (401/404), Redis errors (503).  The route stays declared
in FastAPI, so the OpenAPI schema still documents it.
"""

from __future__ import annotations

import orjson
import redis
from starlette.types import ASGIApp, Receive, Scope, Send

from api.routes.jobs import read_job_body
from shared.auth import AsyncKeyStore, bearer_token, may_access
from shared.errors import ServiceError

JOBS_PREFIX = "/v1/jobs/"
JSON_HEADERS = [(b"content-type", b"application/json")]


def _job_id_of(scope: Scope) -> str | None:
    """The id of a ``GET /v1/jobs/{id}`` request, else None."""
    if scope["type"] != "http" or scope["method"] != "GET":
        return None
    path = scope["path"]
    if not path.startswith(JOBS_PREFIX):
        return None
    job_id = path[len(JOBS_PREFIX):]
    return job_id if job_id and "/" not in job_id else None


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
                    "headers": [*JSON_HEADERS, (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    async def _answer(self, scope: Scope, job_id: str) -> bytes | None:
        """The JSON body of a successful read, or None to let the full application answer."""
        ctx = scope["app"].state.context
        try:
            key_id = await self._key_id(scope, ctx)
            if key_id is False:
                return None
            record, body = await read_job_body(ctx, job_id)
        except (redis.RedisError, ServiceError):
            return None  # job_not_found, or Redis down: the full application gives the error answer
        if not may_access(record.owner, key_id, auth_enabled=ctx.settings.auth.enabled):
            return None
        return orjson.dumps(body)

    @staticmethod
    async def _key_id(scope: Scope, ctx) -> str | None | bool:
        """The caller's key id (None with authentication off), or False if it has no valid key."""
        if not ctx.settings.auth.enabled:
            return None
        authorization = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value.decode("latin-1")
                break
        token = bearer_token(authorization)
        if token is None:
            return False
        key = await AsyncKeyStore(ctx.redis, prefix=ctx.settings.redis.key_prefix).authenticate(token)
        return False if key is None else key.key_id
