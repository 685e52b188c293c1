"""The job store pushes the same Celery message ``send_task`` would, in the transaction that creates the job.

Against a real redis-server and Celery's real Redis producer; the end-to-end
tests then have a real worker consume messages pushed this way.
"""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest
import redis
import redis.asyncio as aredis

from shared.job_store import AsyncJobStore
from shared.jobs import JobRecord, new_job_id
from shared.queue import GENERATE_TASK, GPU_QUEUE, celery_producer
from shared.settings import RedisSettings, Settings
from shared.task_message import capture_generate_message, shares_job_store


@pytest.fixture
def settings(redis_url) -> Settings:
    return Settings(redis=RedisSettings(url=redis_url, key_prefix=f"msg-{uuid.uuid4().hex[:8]}"))


@pytest.fixture
def client(redis_url):
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


def without_delivery_tag(payload: bytes | str) -> tuple[dict, str]:
    message = json.loads(payload)
    return message, message["properties"].pop("delivery_tag")


def test_rendered_message_equals_what_send_task_pushes(settings, client):
    producer = celery_producer(settings)
    template = capture_generate_message(producer, GENERATE_TASK, GPU_QUEUE)
    assert template.list_key == f"{settings.redis.key_prefix}:celery:{GPU_QUEUE}"
    assert client.llen(template.list_key) == 0, "capturing must not enqueue anything"

    job_id = new_job_id()
    producer.send_task(GENERATE_TASK, args=[job_id], task_id=job_id, queue=GPU_QUEUE)
    [sent] = client.lrange(template.list_key, 0, -1)
    rendered = template.render(job_id)

    sent_message, sent_tag = without_delivery_tag(sent)
    ours, our_tag = without_delivery_tag(rendered)
    assert ours == sent_message
    assert list(json.loads(rendered)) == list(json.loads(sent))  # same field order
    assert our_tag != sent_tag and uuid.UUID(our_tag).version == 4
    assert ours["headers"]["id"] == ours["properties"]["correlation_id"] == job_id
    assert template.render(job_id) != rendered, "every message gets its own delivery tag"
    producer.close()


def test_broker_on_another_database_is_not_shared(settings, redis_url):
    assert shares_job_store(celery_producer(settings), redis_url)
    other = settings.model_copy(update={"redis": RedisSettings(url=redis_url.rsplit("/", 1)[0] + "/1")})
    assert not shares_job_store(celery_producer(other), redis_url)


def test_create_writes_record_and_message_together_or_not_at_all(settings, client, redis_url):
    producer = celery_producer(settings)
    template = capture_generate_message(producer, GENERATE_TASK, GPU_QUEUE)
    prefix = settings.redis.key_prefix

    async def scenario() -> None:
        aclient = aredis.Redis.from_url(redis_url)
        store = AsyncJobStore(aclient, prefix=prefix, retention_s=3600)
        record = JobRecord(id=new_job_id(), input_key="jobs/x/input.png")
        message = (template.list_key, template.render(record.id))
        assert await store.create(record, message=message) == 1
        assert await store.create(JobRecord(id=new_job_id(), input_key="y"), message=None) == 2
        with pytest.raises(ValueError):
            await store.create(record, message=(template.list_key, template.render(record.id)))
        await aclient.aclose()

    asyncio.run(scenario())
    assert client.llen(template.list_key) == 1, "a refused duplicate pushes no second message"
    assert client.hget(f"{prefix}:metrics:jobs_by_status", "queued") == b"2"
    assert client.zcard(f"{prefix}:queue") == 2
    producer.close()
