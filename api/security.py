"""Who may call the API, how much, and what answers may reveal.

* :func:`authorize` is the dependency of every ``/v1`` route.  With
  ``auth.enabled`` it requires ``Authorization: Bearer <key>`` (401 otherwise)
  and, on routes with a ``{job_id}``, answers 404 unless the key created that
  job — the same answer as for a job that does not exist, so other tenants'
  ids cannot even be confirmed.  ``/metrics`` (numbers about every tenant)
  takes the scraper's ``auth.metrics_token`` instead, and no API key.  With
  authentication off (the embedded stack) it lets everything through.
* :func:`admit_submission` applies the per-key limits (429) and the global
  queue cap (503), both with ``Retry-After``.  Per-key limits apply to keys,
  so only when authentication is on; the queue cap always applies.
* :func:`install_hardening` adds the request-id middleware, the CORS allowlist
  (off unless origins are listed), answers for failures no route expected
  (Redis down → 503; anything else → a bare 500 with no traceback, path or
  secret), and ``/metrics``.
"""

from __future__ import annotations

import hmac
import logging
import re
import time
import uuid
from typing import Annotated

import redis
from fastapi import Depends, FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response
from pydantic import SecretStr
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.context import ContextDep
from api.metrics import CONTENT_TYPE_LATEST, render_metrics
from shared.auth import AsyncKeyStore, bearer_token, may_access
from shared.errors import (
    JobNotFoundError,
    QueueFullError,
    RateLimitedError,
    TooManyJobsInFlightError,
    UnauthorizedError,
)
from shared.heartbeat import list_workers_async
from shared.job_metrics import read_snapshot
from shared.limits import AsyncLimiter, LimitConfig, Verdict
from shared.structured_logging import request_id_var

log = logging.getLogger("synchuman.api")

ANONYMOUS = None
"""``request.state.key_id`` when authentication is off."""

REQUEST_ID_HEADER = "X-Request-ID"
_REQUEST_ID_KEY = REQUEST_ID_HEADER.lower().encode()
_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")
REDIS_DOWN_RETRY_S = 5


PROTECTED_PREFIX = "/v1/"
METRICS_PATH = "/metrics"


async def authorize(request: Request, ctx: ContextDep) -> str | None:
    """The caller's key id (None with authentication off); 401/404 as described above.

    Installed on the whole application, it guards every path under ``/v1/``
    (including routers added later) and the legacy ``/generate``; ``/metrics``
    takes the scraper's token instead of an API key; health checks, the web
    page and signed file downloads (their signature is their credential) stay
    open.
    """
    settings = ctx.settings
    key_id: str | None = ANONYMOUS
    path = request.scope["path"]
    if settings.auth.enabled and path == METRICS_PATH:
        _check_metrics_token(request, settings.auth.metrics_token)
    elif settings.auth.enabled and (path.startswith(PROTECTED_PREFIX) or path == "/generate"):
        token = bearer_token(request.headers.get("authorization"))
        key = None
        if token is not None:
            key = await AsyncKeyStore(ctx.redis, prefix=settings.redis.key_prefix).authenticate(token)
        if key is None:
            raise UnauthorizedError("a valid API key is required: send `Authorization: Bearer <key>`")
        key_id = key.key_id
        job_id = request.path_params.get("job_id")
        if job_id is not None:
            owner = await _job_owner(ctx, job_id)
            if not may_access(owner, key_id, auth_enabled=True):
                raise JobNotFoundError(f"no job with id {job_id}")
    request.state.key_id = key_id
    return key_id


def _check_metrics_token(request: Request, expected: SecretStr | None) -> None:
    """``/metrics`` covers every tenant: only the scraper's own token reads it, never an API key."""
    token = bearer_token(request.headers.get("authorization"), prefix="")
    if expected is None or token is None or not hmac.compare_digest(
        token.encode(), expected.get_secret_value().encode()
    ):
        raise UnauthorizedError(
            "/metrics needs `Authorization: Bearer <auth.metrics_token>` (set SYNCHUMAN_AUTH__METRICS_TOKEN); "
            "API keys cannot read it"
        )


async def _job_owner(ctx, job_id: str) -> str | None:
    import json

    raw = await ctx.redis.get(ctx.store.keys.job(job_id))
    if raw is None:
        return None
    try:
        return json.loads(raw).get("owner")
    except ValueError:
        return None


KeyIdDep = Annotated[str | None, Depends(authorize)]


def _limiter(request: Request, ctx) -> AsyncLimiter:
    limiter = getattr(request.app.state, "limiter", None)
    if limiter is None:
        limits = ctx.settings.limits
        config = LimitConfig(
            rate_per_s=limits.submit_rate_per_s if ctx.settings.auth.enabled else 0,
            burst=limits.submit_burst,
            max_in_flight=limits.max_in_flight if ctx.settings.auth.enabled else 0,
            max_queue_length=limits.max_queue_length,
        )
        limiter = AsyncLimiter(ctx.redis, config, prefix=ctx.settings.redis.key_prefix)
        request.app.state.limiter = limiter
    return limiter


async def admit_submission(request: Request, ctx, job_id: str) -> None:
    """Admit one new job for the caller, or raise 429/503 with a ``Retry-After``."""
    key_id = getattr(request.state, "key_id", None) or "anonymous"
    admission = await _limiter(request, ctx).admit(
        key_id, job_id, busy_retry_s=ctx.settings.jobs.default_job_s
    )
    if admission.verdict is Verdict.admitted:
        return
    if admission.verdict is Verdict.queue_full:
        raise QueueFullError(
            "the service is at capacity; try again later", retry_after_s=admission.retry_after_s
        )
    if admission.verdict is Verdict.too_many_in_flight:
        raise TooManyJobsInFlightError(
            f"this key already has {ctx.settings.limits.max_in_flight} unfinished jobs",
            retry_after_s=admission.retry_after_s,
        )
    raise RateLimitedError("too many submissions; slow down", retry_after_s=admission.retry_after_s)


class RequestIdMiddleware:
    """One id per HTTP request: taken from ``X-Request-ID`` if sane, else new; echoed back and logged."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = ""
        for name, value in scope.get("headers") or ():
            if name == _REQUEST_ID_KEY:
                incoming = value.decode("latin-1")
                break
        request_id = incoming if incoming and _VALID_REQUEST_ID.match(incoming) else uuid.uuid4().hex
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
                headers.append((_REQUEST_ID_KEY, request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            if log.isEnabledFor(logging.INFO):
                log.info(
                    "request",
                    extra={
                        "method": scope.get("method"),
                        "path": scope.get("path"),
                        "status": status,
                        "ms": round((time.perf_counter() - started) * 1000, 1),
                    },
                )
            request_id_var.reset(token)


def _error(code: str, message: str, status: int, *, retryable: bool, headers: dict | None = None) -> JSONResponse:
    body = {"error": {"code": code, "message": message, "retryable": retryable}}
    return JSONResponse(body, status_code=status, headers=headers)


def install_hardening(app: FastAPI, settings) -> None:
    """Middleware, last-resort error answers and ``/metrics`` (see the module docstring)."""

    @app.exception_handler(redis.RedisError)
    async def redis_unavailable(_: Request, exc: redis.RedisError) -> JSONResponse:
        log.warning("redis unavailable", extra={"error": type(exc).__name__})
        return _error(
            "service_unavailable", "the job store cannot be reached; try again", 503,
            retryable=True, headers={"Retry-After": str(REDIS_DOWN_RETRY_S)},
        )

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.error("unhandled error", exc_info=exc)
        return _error("internal_error", "internal error", 500, retryable=True)

    @app.get(METRICS_PATH, include_in_schema=False)
    async def metrics(ctx: ContextDep) -> Response:
        prefix = ctx.settings.redis.key_prefix
        snapshot = await read_snapshot(ctx.redis, prefix=prefix)
        workers = await list_workers_async(ctx.redis, ctx.store.keys)
        return Response(render_metrics(snapshot, workers), media_type=CONTENT_TYPE_LATEST)

    _document_hardening(app, settings)
    if settings.cors.allow_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors.allow_origins),
            allow_methods=["GET", "POST", "DELETE", "OPTIONS"],
            allow_headers=["Authorization", "Content-Type", "Idempotency-Key", REQUEST_ID_HEADER],
            expose_headers=["Location", "Retry-After", REQUEST_ID_HEADER],
            max_age=600,
        )
    app.add_middleware(RequestIdMiddleware)


SUBMIT_PATHS = frozenset({"/v1/jobs", "/generate"})
"""Operations that create jobs, hence answer 429/503 under the limits."""


def _document_hardening(app: FastAPI, settings) -> None:
    """Add the answers this module can give (401, 429, 503) and the bearer scheme to the OpenAPI schema."""
    build = app.openapi

    def openapi() -> dict:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = build()
        error = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
        if settings.auth.enabled:
            schema.setdefault("components", {}).setdefault("securitySchemes", {})["apiKey"] = {
                "type": "http", "scheme": "bearer", "description": "An API key from `synchuman keys create`."
            }
        for path, operations in schema.get("paths", {}).items():
            guarded = path.startswith(PROTECTED_PREFIX) or path in ("/generate",)
            for method, operation in operations.items():
                responses = operation.setdefault("responses", {})
                if settings.auth.enabled and guarded:
                    operation["security"] = [{"apiKey": []}]
                    responses.setdefault("401", {"description": "`unauthorized`: no valid API key.", "content": error})
                if path in SUBMIT_PATHS and method == "post":
                    responses.setdefault("429", {
                        "description": "`rate_limited` or `too_many_jobs_in_flight`; see `Retry-After`.",
                        "content": error,
                    })
                    responses.setdefault("503", {
                        "description": "`queue_full` or `service_unavailable`; see `Retry-After`.", "content": error
                    })
        app.openapi_schema = schema
        return schema

    app.openapi = openapi
