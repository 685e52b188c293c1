"""What every request handler needs, built once per API process."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Annotated

import redis.asyncio as aredis
from celery import Celery
from fastapi import Depends, Request

from shared.heartbeat import WorkerHeartbeat, list_workers_async
from shared.job_store import AsyncJobStore
from shared.queue import celery_producer
from shared.settings import Settings
from shared.storage import Storage, build_storage
from shared.storage.retrying import RetryingStorage

WORKER_CACHE_S = 2.0
"""How long the list of live workers (used for ETAs) is reused between requests."""


@dataclass
class ApiContext:
    settings: Settings
    redis: aredis.Redis
    store: AsyncJobStore
    storage: Storage
    producer: Celery
    _workers: tuple[float, list[WorkerHeartbeat]] = field(default=(0.0, []), repr=False)

    @classmethod
    def build(cls, settings: Settings) -> ApiContext:
        client = aredis.Redis.from_url(settings.redis.url, max_connections=64)
        return cls(
            settings=settings,
            redis=client,
            store=AsyncJobStore(client, prefix=settings.redis.key_prefix, retention_s=settings.jobs.retention_s),
            storage=RetryingStorage(build_storage(settings.storage), settings.storage_retry),
            producer=celery_producer(settings),
        )

    async def workers(self, *, fresh: bool = False) -> list[WorkerHeartbeat]:
        """Live workers from their heartbeats (cached for a moment unless ``fresh``)."""
        seen, cached = self._workers
        now = time.monotonic()
        if fresh or now - seen > WORKER_CACHE_S:
            cached = await list_workers_async(self.redis, self.store.keys)
            self._workers = (now, cached)
        return cached

    async def close(self) -> None:
        await self.redis.aclose()
        self.producer.close()


async def get_context(request: Request) -> ApiContext:
    # async on purpose: FastAPI runs plain ``def`` dependencies in a thread pool,
    # which would cost a thread hand-off on every request.
    return request.app.state.context


ContextDep = Annotated[ApiContext, Depends(get_context)]
