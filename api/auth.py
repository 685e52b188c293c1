"""Who may call the API, and which jobs a caller may see.

* :func:`authenticate` is a dependency of the whole application.  With
  ``auth.enabled`` every path under ``/v1/`` and ``/generate`` needs
  ``Authorization: Bearer <key>`` (401 otherwise); ``/metrics`` (numbers about
  every tenant) takes the scraper's ``auth.metrics_token`` instead, and no API
  key.  Health checks, the web page and signed file downloads (their signature
  is their credential) stay open.  With authentication off (the embedded
  stack) everything passes as the anonymous caller.
* :data:`JobDep` is the one dependency of every route with a ``{job_id}``: it
  reads the job once (record, queue position, mean job duration) and answers
  404 unless the caller's key created it — the same answer as for a job that
  does not exist, so other tenants' ids cannot even be confirmed.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from pydantic import SecretStr

from api.context import ApiContext, ContextDep
from shared.auth import AsyncKeyStore, bearer_token, may_access
from shared.errors import JobNotFoundError, UnauthorizedError
from shared.jobs import JobRecord

ANONYMOUS = None
"""``request.state.key_id`` when authentication is off."""

PROTECTED_PREFIX = "/v1/"
GUARDED_PATHS = frozenset({"/generate"})
"""Paths outside ``/v1/`` that need an API key."""
METRICS_PATH = "/metrics"


def is_guarded(path: str) -> bool:
    """Whether ``path`` needs an API key when authentication is on."""
    return path.startswith(PROTECTED_PREFIX) or path in GUARDED_PATHS


async def authenticate(request: Request, ctx: ContextDep) -> str | None:
    """The caller's key id (None with authentication off, or on an open path); 401 as described above."""
    key_id = await caller_key_id(ctx, request.scope["path"], request.headers.get("authorization"))
    request.state.key_id = key_id
    return key_id


async def caller_key_id(ctx: ApiContext, path: str, authorization: str | None) -> str | None:
    """The key id of a request to ``path`` with this ``Authorization`` header; 401 unless it may call it."""
    settings = ctx.settings
    if settings.auth.enabled and path == METRICS_PATH:
        _check_metrics_token(authorization, settings.auth.metrics_token)
    elif settings.auth.enabled and is_guarded(path):
        token = bearer_token(authorization)
        key = None
        if token is not None:
            key = await AsyncKeyStore(ctx.redis, prefix=settings.redis.key_prefix).authenticate(token)
        if key is None:
            raise UnauthorizedError("a valid API key is required: send `Authorization: Bearer <key>`")
        return key.key_id
    return ANONYMOUS


def _check_metrics_token(authorization: str | None, expected: SecretStr | None) -> None:
    """``/metrics`` covers every tenant: only the scraper's own token reads it, never an API key."""
    token = bearer_token(authorization, prefix="")
    if expected is None or token is None or not hmac.compare_digest(
        token.encode(), expected.get_secret_value().encode()
    ):
        raise UnauthorizedError(
            "/metrics needs `Authorization: Bearer <auth.metrics_token>` (set SYNCHUMAN_AUTH__METRICS_TOKEN); "
            "API keys cannot read it"
        )


@dataclass(frozen=True)
class JobLookup:
    """One read of a job the caller may see."""

    record: JobRecord
    position: int | None
    """1-based queue position (None unless queued)."""
    job_s: float | None
    """Mean duration of recent jobs (ETAs)."""


async def lookup_job(ctx: ApiContext, job_id: str, key_id: str | None) -> JobLookup:
    """Job ``job_id`` read once, if the caller ``key_id`` may see it; 404 ``job_not_found`` otherwise."""
    record, position, job_s = await ctx.store.get_with_position(job_id)
    if not may_access(record.owner, key_id, auth_enabled=ctx.settings.auth.enabled):
        raise JobNotFoundError(f"no job with id {job_id}")
    return JobLookup(record, position, job_s)


async def get_job(request: Request, ctx: ContextDep, job_id: str) -> JobLookup:
    return await lookup_job(ctx, job_id, request.state.key_id)


JobDep = Annotated[JobLookup, Depends(get_job)]
