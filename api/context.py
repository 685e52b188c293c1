"""What every request handler needs, built once per API process."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Annotated

import redis.asyncio as aredis
from celery import Celery
from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool

from shared.errors import ServiceUnavailableError
from shared.heartbeat import WorkerHeartbeat, list_workers_async
from shared.job_store import AsyncJobStore
from shared.queue import GENERATE_TASK, GPU_QUEUE, celery_producer
from shared.settings import Settings
from shared.storage import Storage, build_storage
from shared.storage.retrying import RetryingStorage
from shared.task_message import TaskMessageTemplate, capture_generate_message, shares_job_store

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
    _generate_message: TaskMessageTemplate | None = field(default=None, repr=False)

    @classmethod
    def build(cls, settings: Settings) -> ApiContext:
        client = aredis.Redis.from_url(settings.redis.url, max_connections=64)
        return cls(
            settings=settings,
            redis=client,
            store=AsyncJobStore(client, prefix=settings.redis.key_prefix, retention_s=settings.jobs.retention_s),
            storage=RetryingStorage(build_storage(settings.storage), settings.storage_retry,
                                    deadline_s=settings.api.storage_deadline_s),
            producer=celery_producer(settings),
        )

    async def workers(self, *, fresh: bool = False) -> list[WorkerHeartbeat]:
        """Live workers from their heartbeats (cached for a moment unless ``fresh``)."""
        seen, cached = self._workers
        now = time.monotonic()
        if fresh or now - seen > WORKER_CACHE_S:
            # One refresh at a time: requests arriving while it runs answer with
            # the previous list instead of each starting their own.
            self._workers = (now, cached)
            cached = await list_workers_async(self.redis, self.store.keys)
            self._workers = (time.monotonic(), cached)
        return cached

    async def generate_message(self, job_id: str) -> tuple[str, str] | None:
        """``(list key, payload)`` of the Celery message that runs ``job_id``, for the job store to push.

        None when the broker is not the job store's Redis database: the caller
        then sends the message with ``send_task`` after creating the record.
        The message format is captured from Celery once per process.
        """
        if self._generate_message is None:
            if not shares_job_store(self.producer, self.settings.redis.url):
                return None
            try:
                self._generate_message = await run_in_threadpool(
                    capture_generate_message, self.producer, GENERATE_TASK, GPU_QUEUE
                )
            except Exception as exc:
                raise ServiceUnavailableError("the job queue cannot be reached; try again") from exc
        template = self._generate_message
        return template.list_key, template.render(job_id)

    async def close(self) -> None:
        await self.storage.aclose()
        await self.redis.aclose()
        self.producer.close()


async def get_context(request: Request) -> ApiContext:
    # async on purpose: FastAPI runs plain ``def`` dependencies in a thread pool,
    # which would cost a thread hand-off on every request.
    return request.app.state.context


ContextDep = Annotated[ApiContext, Depends(get_context)]
