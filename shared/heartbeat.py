"""Worker heartbeats: which workers are alive, warm, and what they run.

Each worker writes ``{prefix}:worker:{worker_id}`` every
``worker.heartbeat_interval_s`` with a TTL of ``worker.heartbeat_ttl_s``; a
worker that dies simply stops appearing.  ``/readyz`` needs at least one warm
worker; ``/health`` and ``/info`` can list them.

Readers find the heartbeats through the set ``{prefix}:workers`` of worker
ids (added with every heartbeat), not by scanning the key space: a scan walks
every key of the database, tens of thousands of job records on a busy
deployment, and the API lists workers every couple of seconds for its ETAs.
Listing drops the ids whose heartbeat has expired, in the same script.

A running job whose worker is dead is an *orphan* (:func:`is_orphan`): nobody
will finish it, so the API recovers it (``api.recovery``) and cancels it at once
(``shared.jobs.cancel``).
"""

from __future__ import annotations

import time

import redis
import redis.asyncio as aredis
from pydantic import BaseModel, Field

from shared.job_store import JobKeys
from shared.jobs import JobRecord, JobStatus


class WorkerHeartbeat(BaseModel):
    worker_id: str
    hostname: str
    pid: int
    pipeline: str
    pipeline_version: str
    device: str
    cuda_visible_devices: str | None = None
    state: str = "warm"
    """``loading`` while the pipelines load, then ``warm`` (idle) or ``busy``."""
    current_job: str | None = None
    gpu_memory_allocated_bytes: int | None = None
    """GPU memory held by tensors (CUDA workers only), for ``/metrics``."""
    gpu_memory_reserved_bytes: int | None = None
    jobs_done: int = 0
    started_at: float = Field(default_factory=time.time)
    seen_at: float = Field(default_factory=time.time)

    @property
    def is_warm(self) -> bool:
        return self.state in ("warm", "busy")


_LIST = """
local live = {}
for _, worker_id in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local beat = redis.call('GET', ARGV[1] .. worker_id)
  if beat then
    live[#live + 1] = beat
  else
    redis.call('SREM', KEYS[1], worker_id)
  end
end
return live
"""
"""The heartbeats of the ids in the worker set (key ``ARGV[1] .. id``), dropping ids whose heartbeat expired."""


def publish(client: redis.Redis, keys: JobKeys, heartbeat: WorkerHeartbeat, ttl_s: int) -> None:
    heartbeat.seen_at = time.time()
    with client.pipeline() as pipe:
        pipe.set(keys.worker(heartbeat.worker_id), heartbeat.model_dump_json(), ex=ttl_s)
        pipe.sadd(keys.workers, heartbeat.worker_id)
        pipe.execute()


def withdraw(client: redis.Redis, keys: JobKeys, worker_id: str) -> None:
    with client.pipeline() as pipe:
        pipe.delete(keys.worker(worker_id))
        pipe.srem(keys.workers, worker_id)
        pipe.execute()


def _parse(values: list[bytes]) -> list[WorkerHeartbeat]:
    return sorted((WorkerHeartbeat.model_validate_json(v) for v in values), key=lambda w: w.worker_id)


def list_workers(client: redis.Redis, keys: JobKeys) -> list[WorkerHeartbeat]:
    """The live workers, by id."""
    return _parse(client.eval(_LIST, 1, keys.workers, keys.worker("")))


async def list_workers_async(client: aredis.Redis, keys: JobKeys) -> list[WorkerHeartbeat]:
    """The live workers, by id (one round trip)."""
    return _parse(await client.eval(_LIST, 1, keys.workers, keys.worker("")))


def is_orphan(record: JobRecord, heartbeat: WorkerHeartbeat | None) -> bool:
    """Whether running job ``record`` has lost its worker (``heartbeat``: the worker's, None if expired).

    Dead: no heartbeat within ``worker.heartbeat_ttl_s``.  Also orphaned: a live worker
    that, in a heartbeat sent after it claimed the job, names no job or another one (it
    gave the job up without being able to write that, e.g. Redis was down).  A worker
    names its job in its heartbeat before claiming it, so a live owner never looks orphaned.
    """
    if record.status is not JobStatus.running or record.worker_id is None:
        return False
    if heartbeat is None:
        return True
    claimed_at = next((e.at for e in reversed(record.history) if e.status is JobStatus.running), record.created_at)
    return heartbeat.current_job != record.id and heartbeat.seen_at > claimed_at


async def worker_heartbeat_async(client: aredis.Redis, keys: JobKeys, worker_id: str) -> WorkerHeartbeat | None:
    raw = await client.get(keys.worker(worker_id))
    return None if raw is None else WorkerHeartbeat.model_validate_json(raw)


async def is_orphaned_async(client: aredis.Redis, keys: JobKeys, record: JobRecord) -> bool:
    if record.status is not JobStatus.running or record.worker_id is None:
        return False
    return is_orphan(record, await worker_heartbeat_async(client, keys, record.worker_id))
