"""Uploads of a succeeded job's artifacts to the caller's presigned URLs (``deliver_to``).

One message = one attempt of one artifact: ``(job_id, name, attempt)`` on the
``webhooks`` queue (no GPU needed).  The attempt is claimed on the job record
first (its ``attempts`` count), so a duplicated message never uploads twice.
Then the artifact is read from storage, refused if over
``deliveries.max_bytes``, and PUT to the URL, which goes through
``shared.url_policy`` again (DNS may have changed since submission) and is
sent to the checked address with the original ``Host`` (presigned URLs sign
it) and TLS server name.  Redirects are not followed.  A network error, a
5xx, 408 or 429 queues the next attempt after the retry schedule's delay
(``deliveries.*``); any other answer, or the last attempt, ends it as
``failed``.  The job's status never changes here.
"""

from __future__ import annotations

import logging
import time

import httpx
from celery import Celery

from shared.deliveries import ArtifactDelivery, DeliveryState
from shared.errors import JobNotFoundError, ServiceError, UrlRefusedError
from shared.jobs import JobRecord, JobStatus
from shared.queue import DELIVERY_TASK, WEBHOOK_QUEUE
from shared.storage.base import content_type_for
from shared.url_policy import resolve_allowed
from shared.webhooks import is_retryable_status, retry_delay
from worker.webhooks import MAX_ERROR_CHARS, DeliveryContext, Outcome

log = logging.getLogger("synchuman.deliveries")

USER_AGENT = "SyncHuman-Delivery/1"


def fire_deliveries(record: JobRecord, producer: Celery) -> None:
    """Queue the first attempt of every upload a succeeded job asked for; a broker hiccup never fails it."""
    for name in record.deliver_to:
        try:
            send_upload(producer, record.id, name, attempt=1)
        except Exception:  # noqa: BLE001 - the job already succeeded; the delivery stays pending
            log.warning("delivery not queued", extra={"job_id": record.id, "artifact": name}, exc_info=True)


def send_upload(producer: Celery, job_id: str, name: str, *, attempt: int, countdown: float | None = None) -> None:
    producer.send_task(DELIVERY_TASK, args=[job_id, name, attempt], queue=WEBHOOK_QUEUE, countdown=countdown)


def put_artifact(url: str, data: bytes, content_type: str, ctx: DeliveryContext) -> Outcome:
    """PUT ``data`` to ``url`` (checked, pinned to the checked address); never raises."""
    try:
        target, address = resolve_allowed(url, ctx.settings.api.url_fetch_allow_hosts)
    except ServiceError as exc:  # refused: final; cannot resolve: maybe later
        return Outcome(None, exc.code, retryable=not isinstance(exc, UrlRefusedError))
    parts = httpx.URL(url)
    headers = {"content-type": content_type, "user-agent": USER_AGENT, "host": parts.netloc.decode("ascii")}
    extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
    try:
        with httpx.Client(timeout=ctx.settings.deliveries.timeout_s, follow_redirects=False, trust_env=False) as client:
            request = client.build_request(
                "PUT", parts.copy_with(host=str(address)), content=data, headers=headers, extensions=extensions
            )
            response = client.send(request)
    except httpx.HTTPError as exc:
        return Outcome(None, type(exc).__name__[:MAX_ERROR_CHARS], retryable=True)
    code = response.status_code
    if 200 <= code < 300:
        return Outcome(code, None, retryable=False)
    return Outcome(code, f"HTTP {code}", retryable=is_retryable_status(code))


def upload(ctx: DeliveryContext, producer: Celery, job_id: str, name: str, attempt: int = 1) -> ArtifactDelivery | None:
    """Make attempt ``attempt`` of uploading artifact ``name``; returns its outcome on the record.

    Returns None without uploading when the attempt is not due: a duplicate
    message, a delivery that already ended, a job that did not succeed or is gone.
    """
    settings = ctx.settings.deliveries
    claimed: list[JobRecord] = []

    def claim(record: JobRecord) -> JobRecord | None:
        claimed.clear()  # a WATCH conflict calls this again on the newer record
        current = record.deliveries.get(name)
        if (
            record.status is not JobStatus.succeeded
            or name not in record.deliver_to
            or current is None
            or current.state is not DeliveryState.pending
            or current.attempts >= attempt
        ):
            return None
        claimed.append(_with_delivery(record, name, current.model_copy(update={"attempts": attempt, "next_attempt_at": None})))
        return claimed[-1]

    try:
        ctx.store.update(job_id, claim)
    except JobNotFoundError:
        return None
    if not claimed:
        return None  # not due
    record = claimed[-1]

    key = record.outputs.get(name)
    started = time.time()
    size: int | None = None
    if key is None:
        outcome = Outcome(None, "not_produced", retryable=False)
    else:
        data = ctx.storage.get_bytes(key)
        size = len(data)
        if size > settings.max_bytes:
            outcome = Outcome(None, "too_large", retryable=False)
        else:
            outcome = put_artifact(record.deliver_to[name], data, content_type_for(key), ctx)
    finished = time.time()
    countdown = None
    if not outcome.delivered and outcome.retryable and attempt <= settings.max_retries:
        countdown = retry_delay(attempt, settings)
    state = (
        DeliveryState.delivered if outcome.delivered
        else DeliveryState.pending if countdown is not None
        else DeliveryState.failed
    )
    result = ArtifactDelivery(
        state=state,
        attempts=attempt,
        status_code=outcome.status_code,
        error=outcome.error,
        bytes=size,
        finished_at=finished if state is not DeliveryState.pending else None,
        next_attempt_at=finished + countdown if countdown is not None else None,
    )
    ctx.store.update(job_id, lambda current: _with_delivery(current, name, result))
    log.info(
        "delivery attempt",
        extra={"job_id": job_id, "artifact": name, "attempt": attempt, "status_code": outcome.status_code,
               "state": state.value, "seconds": round(finished - started, 3)},
    )
    if countdown is not None:
        send_upload(producer, job_id, name, attempt=attempt + 1, countdown=countdown)
    return result


def _with_delivery(record: JobRecord, name: str, delivery: ArtifactDelivery) -> JobRecord:
    return record.model_copy(update={"deliveries": {**record.deliveries, name: delivery}})
