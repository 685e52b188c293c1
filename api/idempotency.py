"""``Idempotency-Key`` on ``POST /v1/jobs``: a retried submission gets the same job.

The first request with a key stores ``{fingerprint, job_id}`` under
``{p}:idempotency:{sha256(owner, key)}`` for ``api.idempotency_ttl_s`` (24 h),
atomically (SET NX), before its job is created.  Within that time:

* the same key with the same request (same image bytes or URL, options and
  webhook) answers 200 with the job the first request created;
* the same key with a different request answers 422 ``idempotency_key_reused``.

The fingerprint is a SHA-256 over the image and a canonical JSON of everything
else, so reordered form fields or options do not count as a different request.
The key is reserved before the submission is admitted, so a replay spends no
rate-limit token; a submission that fails after reserving its key (refused by
the limits, storage or queue down) releases it, so the client's retry creates
the job instead of replaying one that never existed.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from typing import Any

import redis.asyncio as aredis
from fastapi.responses import Response
from pydantic import BaseModel

from api.auth import JobLookup
from api.context import ApiContext
from api.job_reads import job_json, json_response

from shared.errors import IdempotencyConflictError, InvalidInputError, JobNotFoundError, RequestInProgressError
from shared.job_store import AsyncJobStore

HEADER = "Idempotency-Key"
MAX_KEY_LENGTH = 255
CREATION_WAIT_S = 10.0
"""How long a repeated request waits for the first one's job record to appear."""


class Reservation(BaseModel):
    fingerprint: str
    job_id: str
    created_at: float


def request_fingerprint(image: bytes | None, image_url: str | None, **fields: Any) -> str:
    """SHA-256 of the image (or its URL) and the other request fields, canonically encoded."""
    digest = hashlib.sha256()
    digest.update(hashlib.sha256(image).digest() if image is not None else b"-")
    canonical = json.dumps({"image_url": image_url, **fields}, sort_keys=True, separators=(",", ":"), default=str)
    digest.update(canonical.encode())
    return digest.hexdigest()


def _redis_key(prefix: str, owner: str | None, key: str) -> str:
    scoped = hashlib.sha256(f"{owner or ''}\x00{key}".encode()).hexdigest()
    return f"{prefix}:idempotency:{scoped}"


def check_key(key: str) -> str:
    key = key.strip()
    if not key or len(key) > MAX_KEY_LENGTH or not key.isprintable():
        raise InvalidInputError(
            f"{HEADER} must be 1 to {MAX_KEY_LENGTH} printable characters", code="invalid_idempotency_key"
        )
    return key


class IdempotencyKeys:
    """Reservations of idempotency keys in Redis (the API's)."""

    def __init__(self, client: aredis.Redis, *, prefix: str, ttl_s: int) -> None:
        self.redis = client
        self.prefix = prefix
        self.ttl_s = ttl_s

    async def reserve(self, key: str, fingerprint: str, job_id: str, *, owner: str | None = None) -> str | None:
        """Reserve ``key`` for ``job_id``; returns None if reserved now, or the job id of an earlier request.

        Raises :class:`IdempotencyConflictError` if the earlier request differs.
        """
        name = _redis_key(self.prefix, owner, check_key(key))
        mine = Reservation(fingerprint=fingerprint, job_id=job_id, created_at=time.time())
        if await self.redis.set(name, mine.model_dump_json(), nx=True, ex=self.ttl_s):
            return None
        raw = await self.redis.get(name)
        if raw is None:  # expired between the two calls: take it now
            return await self.reserve(key, fingerprint, job_id, owner=owner)
        earlier = Reservation.model_validate_json(raw)
        if earlier.fingerprint != fingerprint:
            raise IdempotencyConflictError(
                f"this {HEADER} was already used for a different request (job {earlier.job_id}); "
                "use a new key for a new request"
            )
        return earlier.job_id

    async def release(self, key: str, *, owner: str | None = None) -> None:
        await self.redis.delete(_redis_key(self.prefix, owner, check_key(key)))


async def wait_for_job(store: AsyncJobStore, job_id: str, timeout_s: float = CREATION_WAIT_S) -> JobLookup:
    """The job ``job_id`` once it exists (the first request may still be creating it).

    Past ``timeout_s`` the first request is still under way (a slow or failing store):
    503 ``request_in_progress`` with ``Retry-After``, never 404 for a job that may yet exist.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return JobLookup(*await store.get_with_position(job_id))
        except JobNotFoundError:
            if time.monotonic() > deadline:
                raise RequestInProgressError(
                    "the first request with this Idempotency-Key is still being processed; retry shortly",
                    retry_after_s=2,
                ) from None
            await asyncio.sleep(0.05)


HELP = (
    "Any unique string (1-255 characters). Resubmitting the same request with the same key within 24 h "
    "answers 200 with the job the first request created; the same key with a different request answers 422."
)


def idempotency_keys(ctx: ApiContext) -> IdempotencyKeys:
    settings = ctx.settings
    return IdempotencyKeys(ctx.redis, prefix=settings.redis.key_prefix, ttl_s=settings.api.idempotency_ttl_s)


async def replay_response(ctx: ApiContext, job_id: str) -> Response:
    """200 with the job an earlier request with the same key created (as ``GET`` shows it now)."""
    job = await wait_for_job(ctx.store, job_id)
    headers = {"Location": f"/v1/jobs/{job_id}", "Idempotent-Replayed": "true"}
    return json_response(await job_json(ctx, job), headers=headers)
