"""Worker heartbeats: which workers are alive, warm, and what they run.

Each worker writes ``{prefix}:worker:{worker_id}`` every
``worker.heartbeat_interval_s`` with a TTL of ``worker.heartbeat_ttl_s``; a
worker that dies simply stops appearing.  ``/readyz`` needs at least one warm
worker; ``/health`` and ``/info`` can list them.
"""

from __future__ import annotations

import time

import redis
import redis.asyncio as aredis
from pydantic import BaseModel, Field

from shared.job_store import JobKeys


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


def publish(client: redis.Redis, keys: JobKeys, heartbeat: WorkerHeartbeat, ttl_s: int) -> None:
    heartbeat.seen_at = time.time()
    client.set(keys.worker(heartbeat.worker_id), heartbeat.model_dump_json(), ex=ttl_s)


def withdraw(client: redis.Redis, keys: JobKeys, worker_id: str) -> None:
    client.delete(keys.worker(worker_id))


def list_workers(client: redis.Redis, keys: JobKeys) -> list[WorkerHeartbeat]:
    names = list(client.scan_iter(match=keys.worker_pattern, count=100))
    values = client.mget(names) if names else []
    return sorted(
        (WorkerHeartbeat.model_validate_json(v) for v in values if v is not None), key=lambda w: w.worker_id
    )


async def list_workers_async(client: aredis.Redis, keys: JobKeys) -> list[WorkerHeartbeat]:
    names = [name async for name in client.scan_iter(match=keys.worker_pattern, count=100)]
    values = await client.mget(names) if names else []
    return sorted(
        (WorkerHeartbeat.model_validate_json(v) for v in values if v is not None), key=lambda w: w.worker_id
    )
