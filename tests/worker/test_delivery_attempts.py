"""One delivery attempt in-process (``worker.webhooks.deliver``) against real Redis and a receiver.

What the end-to-end tests cannot see from outside: the URL is checked again at
delivery time, the request goes to the checked address with the original Host,
redirects are not followed, and a duplicated message does not post twice.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import redis
from celery import Celery

from shared.job_store import JobStore
from shared.jobs import JobRecord, JobStatus, transition
from shared.queue import celery_config
from shared.settings import Settings
from shared.storage import build_storage
from shared.webhook_signature import generate_secret, verify
from shared.webhooks import DeliveryState, WebhookLog, new_delivery_id
from tests.support.webhook_receiver import WebhookReceiver
from worker.webhooks import DeliveryContext, deliver


@pytest.fixture()
def receiver() -> Iterator[WebhookReceiver]:
    """A receiver of this test's own: no call of another test is seen."""
    server = WebhookReceiver().start()
    yield server
    server.stop()


def make_context(redis_url: str, tmp_path, allow: list[str]) -> tuple[DeliveryContext, Celery]:
    settings = Settings(
        redis={"url": redis_url, "key_prefix": "delivery-test"},
        storage={"local_dir": tmp_path / "storage", "signing_secret": "delivery-test-signing-secret"},
        webhooks={"secret": generate_secret(), "allow_hosts": allow, "first_retry_s": 60, "jitter": 0},
    )
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    store = JobStore(client, prefix="delivery-test", retention_s=3600)
    ctx = DeliveryContext(settings, store, build_storage(settings.storage), WebhookLog(client, store.keys, 3600))
    producer = Celery("delivery-test")
    producer.conf.update(celery_config(settings))
    return ctx, producer


def finished_job(ctx: DeliveryContext, webhook_url: str) -> JobRecord:
    record = JobRecord(id="job" + new_delivery_id()[4:16], input_key="jobs/x/input.png", webhook_url=webhook_url)
    ctx.store.create(record)
    return ctx.store.update(record.id, lambda r: transition(r, JobStatus.failed))


def test_url_is_checked_again_at_delivery_time(redis_server, tmp_path, receiver) -> None:
    # The job was accepted while the receiver was allowlisted; the allowlist no longer has it.
    ctx, producer = make_context(redis_server.url, tmp_path, allow=[])
    record = finished_job(ctx, receiver.url("/hook"))
    delivery = deliver(ctx, producer, record.id, "completed", new_delivery_id())
    assert delivery is not None and delivery.state is DeliveryState.failed
    [attempt] = delivery.attempts
    assert attempt.status_code is None and attempt.error.startswith("url_refused")
    assert delivery.next_attempt_at is None  # a refused URL is not retried
    assert receiver.calls == []


def test_request_goes_to_the_checked_address_with_the_original_host(redis_server, tmp_path, receiver) -> None:
    ctx, producer = make_context(redis_server.url, tmp_path, allow=["localhost"])
    url = f"http://localhost:{receiver.port}/hook"
    record = finished_job(ctx, url)
    delivery_id = new_delivery_id()
    delivery = deliver(ctx, producer, record.id, "completed", delivery_id)
    assert delivery.state is DeliveryState.delivered, delivery
    [call] = receiver.calls
    assert call.headers["host"] == f"localhost:{receiver.port}"
    assert call.headers["webhook-id"] == delivery_id
    verify(call.headers, call.body, ctx.settings.webhooks.secret)
    assert json.loads(call.body)["id"] == record.id


def test_duplicate_message_of_one_attempt_posts_once(redis_server, tmp_path, receiver) -> None:
    ctx, producer = make_context(redis_server.url, tmp_path, allow=["127.0.0.1"])
    record = finished_job(ctx, receiver.url("/hook"))
    delivery_id = new_delivery_id()
    first = deliver(ctx, producer, record.id, "completed", delivery_id, 1)
    second = deliver(ctx, producer, record.id, "completed", delivery_id, 1)
    assert first.state is DeliveryState.delivered
    assert second is None
    assert len(receiver.calls) == 1
    assert len(ctx.log.list(record.id)) == 1


def test_redirects_are_not_followed_nor_retried(redis_server, tmp_path, receiver) -> None:
    ctx, producer = make_context(redis_server.url, tmp_path, allow=["127.0.0.1"])
    receiver.statuses["/moved"] = 307
    record = finished_job(ctx, receiver.url("/moved"))
    delivery = deliver(ctx, producer, record.id, "completed", new_delivery_id())
    assert [a.status_code for a in delivery.attempts] == [307]
    assert delivery.state is DeliveryState.failed and delivery.next_attempt_at is None  # and not retried for days
    assert [c.path for c in receiver.calls] == ["/moved"]  # /redirected was never called


def test_gone_job_drops_the_message(redis_server, tmp_path, receiver) -> None:
    ctx, producer = make_context(redis_server.url, tmp_path, allow=["127.0.0.1"])
    assert deliver(ctx, producer, "no-such-job", "completed", new_delivery_id()) is None
    assert receiver.calls == []
