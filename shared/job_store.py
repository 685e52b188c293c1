"""The Redis job store: the single source of truth of every job's state.

Layout (``{p}`` is ``redis.key_prefix``)::

    {p}:job:{id}          JSON JobRecord, expires ``jobs.retention_s`` after its last change
    {p}:queue             sorted set of queued job ids, scored by submission order
    {p}:seq               submission counter (the queue's scores)
    {p}:stats:job_s       moving average of successful job durations (ETAs)
    {p}:running           hash of running job ids -> the id of the worker running each
    {p}:worker:{id}       worker heartbeats (see ``shared.heartbeat``)
    {p}:workers           set of the ids of workers that sent a heartbeat

Every status change runs :func:`shared.jobs.transition` inside a WATCH/MULTI
transaction, so concurrent writers (a redelivered task, a cancel) either see
each other's change or retry; an illegal move raises
:class:`~shared.errors.IllegalTransitionError` and writes nothing.  The same
transaction keeps the queue (a job given back to the queue goes to its end)
and the index of running jobs, from which dead workers' jobs are recovered
(``shared.recovery``), in step with the record.

``JobStore`` is synchronous (worker, tests, CLI); ``AsyncJobStore`` is the
subset the API needs, on ``redis.asyncio``.  The API's two hot operations are
one Lua script each, so one round trip: creating a job (record, queue entry,
counter and, when the broker is this Redis, the Celery message, all or
nothing) and reading a job with its queue position.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import redis
import redis.asyncio as aredis

from shared.errors import JobNotFoundError
from shared.job_metrics import MetricKeys, count_transition
from shared.jobs import JobRecord, JobStatus, cancel, transition

DURATION_EMA_WEIGHT = 0.2
"""Weight of the newest job in the moving average of job durations."""


class JobKeys:
    """Key names of one deployment."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.queue = f"{prefix}:queue"
        self.seq = f"{prefix}:seq"
        self.job_seconds = f"{prefix}:stats:job_s"
        self.workers = f"{prefix}:workers"
        self.running = f"{prefix}:running"

    def job(self, job_id: str) -> str:
        return f"{self.prefix}:job:{job_id}"

    def worker(self, worker_id: str) -> str:
        return f"{self.prefix}:worker:{worker_id}"


_CREATE = """
local job_key, seq_key, queue_key, status_counts = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local record, retention_s, job_id = ARGV[1], ARGV[2], ARGV[3]
if not redis.call('SET', job_key, record, 'EX', retention_s, 'NX') then
  return -1
end
redis.call('ZADD', queue_key, redis.call('INCR', seq_key), job_id)
redis.call('HINCRBY', status_counts, 'queued', 1)
if KEYS[5] then
  redis.call('LPUSH', KEYS[5], ARGV[4])
end
return redis.call('ZRANK', queue_key, job_id)
"""
"""Create one queued job (and push its task message, if given) atomically; its 0-based rank, or -1 if it exists."""

_READ = """
return {redis.call('GET', KEYS[1]), redis.call('ZRANK', KEYS[2], ARGV[1]), redis.call('GET', KEYS[3])}
"""
"""A job's record, its queue rank and the mean job duration, in one call."""


class JobStore:
    """Synchronous job store (worker side, tests, tools)."""

    def __init__(self, client: redis.Redis, *, prefix: str, retention_s: int) -> None:
        self.redis = client
        self.keys = JobKeys(prefix)
        self.retention_s = retention_s

    @classmethod
    def from_url(cls, url: str, *, prefix: str, retention_s: int) -> JobStore:
        return cls(redis.Redis.from_url(url), prefix=prefix, retention_s=retention_s)

    def create(self, record: JobRecord) -> int:
        """Store a new queued job; returns its 1-based queue position."""
        seq = self.redis.incr(self.keys.seq)
        pipe = self.redis.pipeline()
        pipe.set(self.keys.job(record.id), record.model_dump_json(), ex=self.retention_s, nx=True)
        pipe.zadd(self.keys.queue, {record.id: seq})
        pipe.zrank(self.keys.queue, record.id)
        count_transition(pipe, MetricKeys(self.keys.prefix), None, record.status.value)
        created, _, rank = pipe.execute()[:3]
        if not created:
            raise ValueError(f"job {record.id} already exists")
        return int(rank) + 1

    def get(self, job_id: str) -> JobRecord:
        raw = self.redis.get(self.keys.job(job_id))
        if raw is None:
            raise JobNotFoundError(f"no job with id {job_id}")
        return JobRecord.model_validate_json(raw)

    def queue_position(self, job_id: str) -> int | None:
        rank = self.redis.zrank(self.keys.queue, job_id)
        return None if rank is None else int(rank) + 1

    def update(self, job_id: str, change: Callable[[JobRecord], JobRecord | None]) -> JobRecord:
        """Apply ``change`` atomically; it returns the new record, or None to write nothing."""
        key = self.keys.job(job_id)
        with self.redis.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(key)
                    raw = pipe.get(key)
                    if raw is None:
                        raise JobNotFoundError(f"no job with id {job_id}")
                    current = JobRecord.model_validate_json(raw)
                    new = change(current)
                    if new is None:
                        pipe.unwatch()
                        return current
                    score = pipe.incr(self.keys.seq) if _requeued(current, new) else None
                    pipe.multi()
                    _queue_write(pipe, self.keys, self.retention_s, current, new, score)
                    pipe.execute()
                    return new
                except redis.WatchError:
                    continue

    def transition(self, job_id: str, status: JobStatus, **changes: Any) -> JobRecord:
        return self.update(job_id, lambda record: transition(record, status, **changes))

    def request_cancel(self, job_id: str) -> JobRecord:
        return self.update(job_id, cancel)

    def record_duration(self, seconds: float) -> None:
        """Fold one successful job's duration into the moving average used for ETAs."""
        with self.redis.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(self.keys.job_seconds)
                    old = pipe.get(self.keys.job_seconds)
                    new = seconds if old is None else (1 - DURATION_EMA_WEIGHT) * float(old) + DURATION_EMA_WEIGHT * seconds
                    pipe.multi()
                    pipe.set(self.keys.job_seconds, f"{new:.3f}")
                    pipe.execute()
                    return
                except redis.WatchError:
                    continue


class AsyncJobStore:
    """The API's view of the job store, on ``redis.asyncio``."""

    def __init__(self, client: aredis.Redis, *, prefix: str, retention_s: int) -> None:
        self.redis = client
        self.keys = JobKeys(prefix)
        self.retention_s = retention_s
        self._status_counts = MetricKeys(prefix).jobs_by_status
        self._create = client.register_script(_CREATE)
        self._read = client.register_script(_READ)

    async def create(self, record: JobRecord, *, message: tuple[str, str] | None = None) -> int:
        """Store a new queued job; returns its 1-based queue position.

        ``message`` is ``(list key, payload)`` of the job's task message, pushed
        in the same script: either both exist afterwards or neither does.
        """
        keys = [self.keys.job(record.id), self.keys.seq, self.keys.queue, self._status_counts]
        args = [record.model_dump_json(), self.retention_s, record.id]
        if message is not None:
            keys.append(message[0])
            args.append(message[1])
        rank = await self._create(keys=keys, args=args)
        if rank == -1:
            raise ValueError(f"job {record.id} already exists")
        return int(rank) + 1

    async def get_raw_with_rank(self, job_id: str) -> tuple[bytes | None, int | None, float | None]:
        """The stored record JSON (None if missing), its queue rank (0-based) and the mean job duration."""
        raw, rank, job_s = await self._read(keys=[self.keys.job(job_id), self.keys.queue, self.keys.job_seconds],
                                            args=[job_id])
        return raw or None, rank, float(job_s) if job_s else None

    async def get_with_position(self, job_id: str) -> tuple[JobRecord, int | None, float | None]:
        """The record, its queue position (None unless queued) and the mean job duration."""
        raw, rank, job_s = await self.get_raw_with_rank(job_id)
        if raw is None:
            raise JobNotFoundError(f"no job with id {job_id}")
        record = JobRecord.model_validate_json(raw)
        position = int(rank) + 1 if rank is not None and record.status is JobStatus.queued else None
        return record, position, job_s

    async def update(self, job_id: str, change: Callable[[JobRecord], JobRecord | None]) -> JobRecord:
        key = self.keys.job(job_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            while True:
                try:
                    await pipe.watch(key)
                    raw = await pipe.get(key)
                    if raw is None:
                        raise JobNotFoundError(f"no job with id {job_id}")
                    current = JobRecord.model_validate_json(raw)
                    new = change(current)
                    if new is None:
                        await pipe.unwatch()
                        return current
                    score = await pipe.incr(self.keys.seq) if _requeued(current, new) else None
                    pipe.multi()
                    _queue_write(pipe, self.keys, self.retention_s, current, new, score)
                    await pipe.execute()
                    return new
                except redis.WatchError:
                    continue

    async def request_cancel(self, job_id: str, *, orphaned: bool = False) -> JobRecord:
        return await self.update(job_id, lambda record: cancel(record, orphaned=orphaned))

    async def delete(self, job_id: str) -> None:
        """Remove a job that was never enqueued (its message could not be sent)."""
        if await self.redis.delete(self.keys.job(job_id)):
            await self.redis.hincrby(MetricKeys(self.keys.prefix).jobs_by_status, "queued", -1)
        await self.redis.zrem(self.keys.queue, job_id)


def _requeued(current: JobRecord, new: JobRecord) -> bool:
    return new.status is JobStatus.queued and current.status is not JobStatus.queued


def _queue_write(pipe, keys: JobKeys, retention_s: int, current: JobRecord, new: JobRecord, score: int | None) -> None:
    """Queue (in a MULTI block, sync or async) the writes of one change from ``current`` to ``new``.

    ``score`` places a job given back to the queue at its end (a fresh submission number).
    """
    job_id = new.id
    pipe.set(keys.job(job_id), new.model_dump_json(), ex=retention_s)
    count_transition(pipe, MetricKeys(keys.prefix), current.status.value, new.status.value,
                     new.error.code if new.error else None)
    if new.status is JobStatus.queued:
        if score is not None:
            pipe.zadd(keys.queue, {job_id: score})
    else:
        pipe.zrem(keys.queue, job_id)
    if new.status is JobStatus.running and new.worker_id:
        pipe.hset(keys.running, job_id, new.worker_id)
    else:
        pipe.hdel(keys.running, job_id)
