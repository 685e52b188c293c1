"""Webhooks of a job: events, the retry schedule and the delivery log.

A job may name a ``webhook_url`` and the events it wants (``webhook_events``):

``started``            the job left the queue and a worker started it;
``stage1.completed``   the five views and the occupancy exist, stage 2 starts;
``completed``          the job ended: succeeded, failed or canceled (the default).

Each event fired becomes one *delivery*: a message with its own id (the
``webhook-id`` header, unchanged across retries), sent by the task
``webhooks.deliver`` on the CPU queue ``webhooks`` (never a GPU worker's).
The body is the job exactly as ``GET /v1/jobs/{id}`` returns it, built at each
attempt (fresh URLs); the header ``webhook-event`` names the event.  Calls are
signed in the Standard Webhooks format (``shared.webhook_signature``).

A failed attempt is retried after ``webhooks.first_retry_s`` seconds, then a
delay ``webhooks.backoff_factor`` times longer each time (capped at
``webhooks.max_retry_s``, each delay jittered by up to ``webhooks.jitter``),
at most ``webhooks.max_retries`` times: by default 5 s, 25 s, 2 min, 10 min,
52 min, 4.3 h, 21.7 h, then 24 h twice, about 3.1 days in all.  4xx answers
other than 408 and 429 are not retried; neither are refused URLs.

The log of every delivery (attempts, status codes, next retry) lives next to
the job record, in the hash ``{p}:job:{id}:webhooks`` (field = delivery id),
and expires with it.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable
from enum import StrEnum
from typing import Any

import redis
import redis.asyncio as aredis
from celery import Celery
from pydantic import BaseModel

from shared.errors import InvalidOptionsError
from shared.job_store import JobKeys
from shared.jobs import JobRecord
from shared.queue import WEBHOOK_QUEUE, WEBHOOK_TASK
from shared.settings import RetrySchedule


class WebhookEvent(StrEnum):
    started = "started"
    stage1_completed = "stage1.completed"
    completed = "completed"


DEFAULT_EVENTS: tuple[WebhookEvent, ...] = (WebhookEvent.completed,)
EVENTS_HELP = (
    "Comma-separated events webhook_url is called for: started, stage1.completed, completed "
    "(default: completed, which fires for succeeded, failed and canceled)."
)

RETRIED_CLIENT_ERRORS = frozenset({408, 429})
"""4xx statuses that are retried all the same (timeout, rate limited)."""


def is_retryable_status(status_code: int) -> bool:
    """Whether an answer other than 2xx is worth another attempt.

    Redirects are never followed (the target would escape the URL check) and a receiver
    that redirects will do so again: 3xx is a failed delivery, not retried.
    """
    if 300 <= status_code < 400:
        return False
    if 400 <= status_code < 500:
        return status_code in RETRIED_CLIENT_ERRORS
    return True


def retry_delay(retry: int, settings: RetrySchedule, rng: random.Random | None = None) -> float:
    """Seconds to wait before retry number ``retry`` (1 = the first retry), jittered."""
    base = settings.first_retry_s * settings.backoff_factor ** (retry - 1)
    base = min(base, settings.max_retry_s)
    spread = (rng or random).uniform(-settings.jitter, settings.jitter)
    return max(0.0, min(base * (1.0 + spread), settings.max_retry_s))


def retry_schedule(settings: RetrySchedule) -> list[float]:
    """The un-jittered delays of every retry, in order (documentation, /info)."""
    return [
        min(settings.first_retry_s * settings.backoff_factor ** (n - 1), settings.max_retry_s)
        for n in range(1, settings.max_retries + 1)
    ]


class DeliveryState(StrEnum):
    pending = "pending"
    """Not yet delivered; an attempt is queued or under way."""
    delivered = "delivered"
    failed = "failed"
    """Given up: a final answer that is not retried, or every retry used."""


class DeliveryAttempt(BaseModel):
    number: int
    """1 for the first attempt, 2 for the first retry, …"""
    at: float
    duration_s: float
    status_code: int | None = None
    """The receiver's HTTP status, or None if no answer came (``error`` says why)."""
    error: str | None = None


class WebhookDelivery(BaseModel):
    id: str
    """The message id (``webhook-id`` header)."""
    event: WebhookEvent
    url: str
    created_at: float
    state: DeliveryState = DeliveryState.pending
    attempts: list[DeliveryAttempt] = []
    next_attempt_at: float | None = None
    """When the next attempt is due (None unless a retry is scheduled)."""
    claimed_attempt: int = 0
    """The highest attempt number a worker has started (duplicate messages skip it)."""
    claimed_at: float | None = None
    redelivery_of: str | None = None
    """The delivery this one repeats, for deliveries made by ``…/webhooks/redeliver``."""

    def public(self) -> dict[str, Any]:
        """What ``GET /v1/jobs/{id}/webhooks`` shows of it."""
        return self.model_dump(mode="json", exclude={"claimed_attempt", "claimed_at"})


def new_delivery_id() -> str:
    return f"msg_{uuid.uuid4().hex}"


def log_key(keys: JobKeys, job_id: str) -> str:
    return f"{keys.job(job_id)}:webhooks"


class WebhookLog:
    """The delivery log of every job (synchronous: the webhook task, tests)."""

    def __init__(self, client: redis.Redis, keys: JobKeys, retention_s: int) -> None:
        self.redis = client
        self.keys = keys
        self.retention_s = retention_s

    def add(self, job_id: str, delivery: WebhookDelivery) -> WebhookDelivery:
        """Store ``delivery`` unless one with its id exists; returns the stored one."""
        key = log_key(self.keys, job_id)
        pipe = self.redis.pipeline()
        pipe.hsetnx(key, delivery.id, delivery.model_dump_json())
        pipe.expire(key, self.retention_s)
        pipe.hget(key, delivery.id)
        _, _, raw = pipe.execute()
        return WebhookDelivery.model_validate_json(raw)

    def get(self, job_id: str, delivery_id: str) -> WebhookDelivery | None:
        raw = self.redis.hget(log_key(self.keys, job_id), delivery_id)
        return None if raw is None else WebhookDelivery.model_validate_json(raw)

    def list(self, job_id: str) -> list[WebhookDelivery]:
        return _sorted(self.redis.hvals(log_key(self.keys, job_id)))

    def update(
        self, job_id: str, delivery_id: str, change: Callable[[WebhookDelivery], WebhookDelivery | None]
    ) -> WebhookDelivery | None:
        """Apply ``change`` atomically; returns the new delivery, or None if nothing was written."""
        key = log_key(self.keys, job_id)
        with self.redis.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(key)
                    raw = pipe.hget(key, delivery_id)
                    if raw is None:
                        pipe.unwatch()
                        return None
                    new = change(WebhookDelivery.model_validate_json(raw))
                    if new is None:
                        pipe.unwatch()
                        return None
                    pipe.multi()
                    pipe.hset(key, delivery_id, new.model_dump_json())
                    pipe.expire(key, self.retention_s)
                    pipe.execute()
                    return new
                except redis.WatchError:
                    continue

    def claim(self, job_id: str, delivery_id: str, attempt: int, lease_s: float) -> WebhookDelivery | None:
        """Mark attempt ``attempt`` as started; None if it is not due (a duplicate message).

        An attempt that was claimed but never recorded (its worker died) may be
        claimed again once ``lease_s`` has passed.
        """
        now = time.time()

        def take(delivery: WebhookDelivery) -> WebhookDelivery | None:
            if delivery.state is not DeliveryState.pending or len(delivery.attempts) >= attempt:
                return None
            stale = delivery.claimed_at is None or now - delivery.claimed_at > lease_s
            if delivery.claimed_attempt >= attempt and not stale:
                return None
            return delivery.model_copy(update={"claimed_attempt": attempt, "claimed_at": now, "next_attempt_at": None})

        return self.update(job_id, delivery_id, take)


async def read_log(client: aredis.Redis, keys: JobKeys, job_id: str) -> list[WebhookDelivery]:
    """Every delivery of a job, oldest first (the API's read path)."""
    return _sorted(await client.hvals(log_key(keys, job_id)))


def _sorted(values: list[bytes]) -> list[WebhookDelivery]:
    deliveries = [WebhookDelivery.model_validate_json(v) for v in values]
    return sorted(deliveries, key=lambda d: (d.created_at, d.id))


def parse_events(raw: list[str] | str | None) -> list[str]:
    """A request's ``webhook_events`` (a list, or one comma-separated string) as event names.

    None or empty means the default, ``completed``; an unknown name raises
    :class:`InvalidOptionsError`.
    """
    names = raw.split(",") if isinstance(raw, str) else list(raw or [])
    events: list[str] = []
    for name in (n.strip() for n in names):
        if not name:
            continue
        try:
            event = WebhookEvent(name)
        except ValueError:
            known = ", ".join(e.value for e in WebhookEvent)
            raise InvalidOptionsError(f"unknown webhook event {name!r}; choose from {known}") from None
        if event.value not in events:
            events.append(event.value)
    return events or [e.value for e in DEFAULT_EVENTS]


def wants(record: JobRecord, event: WebhookEvent) -> bool:
    """Whether ``record`` has a webhook subscribed to ``event``."""
    if not record.webhook_url:
        return False
    return event.value in (record.webhook_events or [e.value for e in DEFAULT_EVENTS])


def send_delivery(
    producer: Celery,
    job_id: str,
    event: WebhookEvent,
    *,
    delivery_id: str | None = None,
    attempt: int = 1,
    countdown: float | None = None,
    redelivery_of: str | None = None,
) -> str:
    """Queue one attempt of a delivery on the ``webhooks`` queue; returns the delivery id.

    The task records a new delivery in the log on its first attempt, so
    firing an event is just this message (cheap from the API and the worker).
    """
    delivery_id = delivery_id or new_delivery_id()
    producer.send_task(
        WEBHOOK_TASK,
        args=[job_id, event.value, delivery_id, attempt],
        kwargs={"redelivery_of": redelivery_of} if redelivery_of else {},
        queue=WEBHOOK_QUEUE,
        countdown=countdown,
    )
    return delivery_id


def fire(producer: Celery, record: JobRecord, event: WebhookEvent) -> str | None:
    """Queue ``event`` for ``record`` if its webhook wants it; returns the delivery id."""
    if not wants(record, event):
        return None
    return send_delivery(producer, record.id, event)
