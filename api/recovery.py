"""Dead-worker recovery: a running job whose worker stopped beating is given back, or ended.

A worker that dies (kill -9, OOM killer, driver reset, lost node) cannot say so:
its heartbeat (``shared.heartbeat``) simply expires after ``worker.heartbeat_ttl_s``.
Every API process checks the running jobs every ``worker.recovery_interval_s``
(the index ``{p}:running`` names each one's worker) and applies
``shared.jobs.recover`` to each orphan (``shared.heartbeat.is_orphan``), in the
job store's transaction, so one process wins and the others see the change:

* a cancel was requested -> canceled;
* the job used its ``worker.max_attempts`` starts -> failed ``worker_lost``;
* otherwise -> back at the end of the queue (the dead start counted), with a new
  task message, so a waiting worker takes it within seconds.

A job that ends here has its partial artifacts removed and its ``completed``
webhook queued.  The broker's visibility timeout stays the last resort: the dead
worker's unacknowledged message is redelivered hours later, and the task then
finds its job finished (or running elsewhere) and leaves it alone.
"""

from __future__ import annotations

import asyncio
import logging

from starlette.concurrency import run_in_threadpool

from api.context import ApiContext
from api.submission import send_generate
from shared.artifacts import remove_partial_artifacts
from shared.errors import JobNotFoundError
from shared.heartbeat import is_orphan, worker_heartbeat_async
from shared.jobs import JobRecord, JobStatus, recover
from shared.webhooks import WebhookEvent, fire

log = logging.getLogger("synchuman.api.recovery")


async def recover_orphans(ctx: ApiContext) -> list[JobRecord]:
    """One pass over the running jobs; the records this pass changed."""
    keys = ctx.store.keys
    changed: list[JobRecord] = []
    for raw_job, raw_worker in (await ctx.redis.hgetall(keys.running)).items():
        job_id, worker_id = raw_job.decode(), raw_worker.decode()
        try:
            record, _, _ = await ctx.store.get_with_position(job_id)
        except JobNotFoundError:
            await ctx.redis.hdel(keys.running, job_id)
            continue
        if not is_orphan(record, await worker_heartbeat_async(ctx.redis, keys, worker_id)):
            continue
        recovered = await _recover(ctx, job_id, worker_id)
        if recovered is not None:
            changed.append(recovered)
    return changed


async def _recover(ctx: ApiContext, job_id: str, worker_id: str) -> JobRecord | None:
    written: list[JobRecord] = []

    def apply(current: JobRecord) -> JobRecord | None:
        new = recover(current, worker_id, max_attempts=ctx.settings.worker.max_attempts)
        if new is not None:
            written.append(new)
        return new

    record = await ctx.store.update(job_id, apply)
    if not written or record is not written[-1]:
        return None  # it moved on meanwhile
    log.warning("job recovered from a dead worker",
                extra={"job_id": job_id, "worker_id": worker_id, "status": record.status.value})
    if record.status is JobStatus.queued:
        await run_in_threadpool(send_generate, ctx, job_id)
    else:
        await run_in_threadpool(fire, ctx.producer, record, WebhookEvent.completed)
        await run_in_threadpool(remove_partial_artifacts, ctx.storage, job_id)
    return record


async def run_recovery(ctx: ApiContext) -> None:
    """Recover orphans every ``worker.recovery_interval_s`` until cancelled (the app's lifespan)."""
    interval = ctx.settings.worker.recovery_interval_s
    while True:
        try:
            await recover_orphans(ctx)
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - Redis or the broker down: try again at the next pass
            log.warning("dead-worker recovery pass failed", exc_info=True)
        await asyncio.sleep(interval)
