"""How much a caller may submit: per-key limits (429) and the global queue cap (503).

Per-key limits apply to keys, so only when authentication is on; the queue
cap always applies.  Every refusal carries ``Retry-After``.  The counters live
in Redis (``shared.limits``), shared by every API process.
"""

from __future__ import annotations

from fastapi import Request

from api.context import ApiContext
from shared.errors import QueueFullError, RateLimitedError, TooManyJobsInFlightError
from shared.limits import AsyncLimiter, LimitConfig, Verdict


def _limiter(request: Request, ctx: ApiContext) -> AsyncLimiter:
    limiter = getattr(request.app.state, "limiter", None)
    if limiter is None:
        limits, auth = ctx.settings.limits, ctx.settings.auth.enabled
        config = LimitConfig(
            rate_per_s=limits.submit_rate_per_s if auth else 0,
            burst=limits.submit_burst,
            max_in_flight=limits.max_in_flight if auth else 0,
            max_queue_length=limits.max_queue_length,
        )
        limiter = AsyncLimiter(ctx.redis, config, prefix=ctx.settings.redis.key_prefix)
        request.app.state.limiter = limiter
    return limiter


async def admit_submission(request: Request, ctx: ApiContext, job_id: str) -> None:
    """Admit one new job for the caller, or raise 429/503 with a ``Retry-After``."""
    key_id = getattr(request.state, "key_id", None) or "anonymous"
    admission = await _limiter(request, ctx).admit(key_id, job_id, busy_retry_s=ctx.settings.jobs.default_job_s)
    if admission.verdict is Verdict.admitted:
        return
    if admission.verdict is Verdict.queue_full:
        raise QueueFullError("the service is at capacity; try again later", retry_after_s=admission.retry_after_s)
    if admission.verdict is Verdict.too_many_in_flight:
        raise TooManyJobsInFlightError(
            f"this key already has {ctx.settings.limits.max_in_flight} unfinished jobs",
            retry_after_s=admission.retry_after_s,
        )
    raise RateLimitedError("too many submissions; slow down", retry_after_s=admission.retry_after_s)
