"""The webhook delivery task (queue ``webhooks``, CPU only; see ``shared.webhooks``).

One message = one attempt of one delivery: ``(job_id, event, delivery_id, attempt)``.
The attempt is claimed in the delivery log first, so a duplicated message (late
acks, broker redelivery of a long countdown) never posts twice.  Then:

1. the job's current record becomes the body (the job as GET returns it, fresh URLs),
   the header ``webhook-event`` names the event;
2. ``webhook_url`` goes through ``shared.url_policy`` again (DNS may have changed
   since the job was submitted) and the request is sent to the address that was
   checked, with the original ``Host`` header and TLS server name;
3. the answer is logged; a retryable failure queues the next attempt with a
   countdown from the retry schedule.

Redirects are never followed (a 3xx is a failed attempt).  The process needs
no pipelines: it only reads Redis and storage, so a small CPU worker
(``celery -A worker.celery_app worker -Q webhooks``) serves it.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx
import redis
from celery import Celery

from shared.errors import JobNotFoundError, ServiceError, UrlRefusedError
from shared.job_store import JobStore
from shared.jobs import JobRecord
from shared.job_view import job_body
from shared.settings import Settings, get_settings
from shared.storage import Storage, build_storage
from shared.url_policy import resolve_allowed
from shared.webhook_signature import signature_headers
from shared.webhooks import (
    DeliveryAttempt,
    DeliveryState,
    WebhookDelivery,
    WebhookEvent,
    WebhookLog,
    is_retryable_status,
    fire,
    retry_delay,
    send_delivery,
)

log = logging.getLogger("synchuman.webhooks")

USER_AGENT = "SyncHuman-Webhooks/1"
MAX_ERROR_CHARS = 200


@dataclass
class DeliveryContext:
    """What the delivery task needs; built once per worker process, without pipelines."""

    settings: Settings
    store: JobStore
    storage: Storage
    log: WebhookLog

    @classmethod
    def build(cls, settings: Settings) -> DeliveryContext:
        client = redis.Redis.from_url(settings.redis.url)
        store = JobStore(client, prefix=settings.redis.key_prefix, retention_s=settings.jobs.retention_s)
        return cls(
            settings=settings,
            store=store,
            storage=build_storage(settings.storage),
            log=WebhookLog(client, store.keys, settings.jobs.retention_s),
        )


_context: DeliveryContext | None = None
_lock = threading.Lock()


def delivery_context() -> DeliveryContext:
    global _context
    with _lock:
        if _context is None:
            _context = DeliveryContext.build(get_settings())
        return _context


@dataclass(frozen=True)
class Outcome:
    """How one attempt ended."""

    status_code: int | None
    error: str | None
    retryable: bool

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def post_signed(url: str, body: bytes, msg_id: str, event: WebhookEvent, ctx: DeliveryContext) -> Outcome:
    """POST ``body`` to ``url`` (checked, pinned to the checked address, signed); never raises."""
    settings = ctx.settings.webhooks
    try:
        target, address = resolve_allowed(url, settings.allow_hosts)
    except ServiceError as exc:  # refused: final; cannot resolve: maybe later
        refused = isinstance(exc, UrlRefusedError)
        return Outcome(None, f"{exc.code}: {exc.message}"[:MAX_ERROR_CHARS], retryable=not refused)
    parts = httpx.URL(url)
    pinned = parts.copy_with(host=str(address))
    headers = {
        **signature_headers(settings.secret, msg_id, body),
        "webhook-event": event.value,
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        "host": parts.netloc.decode("ascii"),
    }
    extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
    try:
        with httpx.Client(timeout=settings.timeout_s, follow_redirects=False, trust_env=False) as client:
            request = client.build_request("POST", pinned, content=body, headers=headers, extensions=extensions)
            response = client.send(request)
    except httpx.HTTPError as exc:
        return Outcome(None, f"{type(exc).__name__}: {exc}"[:MAX_ERROR_CHARS], retryable=True)
    code = response.status_code
    if 200 <= code < 300:
        return Outcome(code, None, retryable=False)
    return Outcome(code, f"HTTP {code}", retryable=is_retryable_status(code))


def deliver(
    ctx: DeliveryContext,
    producer: Celery,
    job_id: str,
    event_name: str,
    delivery_id: str,
    attempt: int = 1,
    *,
    redelivery_of: str | None = None,
) -> WebhookDelivery | None:
    """Make attempt ``attempt`` of delivery ``delivery_id``; returns the logged delivery.

    Returns None without posting when the attempt is not due (a duplicate
    message, or a delivery that already ended) or the job no longer exists.
    """
    event = WebhookEvent(event_name)
    settings = ctx.settings.webhooks
    try:
        record = ctx.store.get(job_id)
    except JobNotFoundError:
        log.info("webhook dropped: job gone", extra={"job_id": job_id, "delivery_id": delivery_id})
        return None
    if not record.webhook_url:
        return None
    ctx.log.add(
        job_id,
        WebhookDelivery(
            id=delivery_id, event=event, url=record.webhook_url, created_at=time.time(), redelivery_of=redelivery_of
        ),
    )
    delivery = ctx.log.claim(job_id, delivery_id, attempt, lease_s=2 * settings.timeout_s + 30)
    if delivery is None:
        return None

    body = json.dumps(job_body(record, ctx.storage, ctx.settings.storage.url_ttl_s)).encode()
    started = time.time()
    outcome = post_signed(delivery.url, body, delivery.id, event, ctx)
    finished = time.time()
    retry_at: float | None = None
    countdown: float | None = None
    if not outcome.delivered and outcome.retryable and attempt <= settings.max_retries:
        countdown = retry_delay(attempt, settings)
        retry_at = finished + countdown
    if outcome.delivered:
        state = DeliveryState.delivered
    elif retry_at is not None:
        state = DeliveryState.pending
    else:
        state = DeliveryState.failed

    def record_attempt(current: WebhookDelivery) -> WebhookDelivery:
        entry = DeliveryAttempt(
            number=attempt,
            at=started,
            duration_s=round(finished - started, 3),
            status_code=outcome.status_code,
            error=outcome.error,
        )
        return current.model_copy(
            update={"attempts": [*current.attempts, entry], "state": state, "next_attempt_at": retry_at}
        )

    logged = ctx.log.update(job_id, delivery_id, record_attempt)
    log.info(
        "webhook attempt",
        extra={
            "job_id": job_id,
            "delivery_id": delivery_id,
            "webhook_event": event.value,
            "attempt": attempt,
            "status_code": outcome.status_code,
            "state": state.value,
        },
    )
    if countdown is not None:
        send_delivery(producer, job_id, event, delivery_id=delivery_id, attempt=attempt + 1, countdown=countdown)
    return logged


def announcer(producer: Celery) -> Callable[[JobRecord, WebhookEvent], None]:
    """``announce(record, event)``: queue ``event`` if the job's webhook wants it, through ``producer``.

    A broker hiccup never fails the job: its outcome matters more than one notification.
    """

    def announce(record: JobRecord, event: WebhookEvent) -> None:
        try:
            fire(producer, record, event)
        except Exception:  # noqa: BLE001
            log.warning("webhook not queued", extra={"job_id": record.id, "webhook_event": event.value}, exc_info=True)

    return announce
