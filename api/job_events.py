"""``GET /v1/jobs/{id}/events``: a job's progress as Server-Sent Events, instead of polling.

The stream reads the job record every ``api.events_interval_s`` (0.25 s) and
sends an event whenever what a client shows changes: status, stage,
progress, queue position or attempt.  So there are at most four events a
second, and none while nothing moves.  Each event's data is the job exactly
as ``GET /v1/jobs/{id}`` answers it (fresh download URLs included, so the
stage-1 views appear as soon as they are listed)::

    retry: 1000

    id: 1.running.stage1.31.0.-
    event: update
    data: {"id": "...", "status": "running", "stage": "stage1", "progress": 31.0, ...}

    id: 1.succeeded.upload.100.0.-
    event: done
    data: {"id": "...", "status": "succeeded", "outputs": {...}, ...}

``update`` events carry a queued or running job; the one ``done`` event
carries the finished job (succeeded, failed or canceled) and the server then
closes the stream.  A comment line (``: keep-alive``) goes out after 15 s
without events so that proxies keep the connection open.  After
``api.events_max_s`` (10 min) the server closes a stream whose job has not
finished; clients reconnect.

Event ids name the state they carry.  A client that reconnects with
``Last-Event-ID`` (browsers' ``EventSource`` does it by itself) gets the
next change after that state, never the same state again; reconnecting
after ``done`` answers **204**, which tells ``EventSource`` to stop.
Intermediate states missed while disconnected are not replayed: the first
event is the job as it is now.

Authentication and tenants are as for ``GET /v1/jobs/{id}`` (``api.auth``:
the app-wide ``authenticate`` dependency and ``JobDep``): 401 without a valid key, 404
for an unknown job or another key's.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import orjson
from starlette.responses import Response, StreamingResponse

from api.context import ApiContext
from shared.errors import JobNotFoundError
from shared.jobs import JobRecord

ReadJob = Callable[[ApiContext, str], Awaitable[tuple[JobRecord, dict]]]
"""``read_job(ctx, job_id) -> (record, body)``: how ``GET /v1/jobs/{id}`` builds its answer."""

KEEP_ALIVE_S = 15.0
"""Longest silence on a stream: a comment line goes out after it."""
RECONNECT_MS = 1000
"""The ``retry`` the stream announces: how long an ``EventSource`` waits before reconnecting."""
HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
"""No caching, and no buffering by nginx-style proxies: events must arrive as they are sent."""


def event_id(job: dict) -> str:
    """The id of the event that carries ``job`` (a body as ``GET`` answers it): its visible state."""
    position = job["queue_position"] if job["queue_position"] is not None else "-"
    return f"{job['attempts']}.{job['status']}.{job['stage'] or '-'}.{job['progress']}.{position}"


def _state_id(record: JobRecord, position: int | None) -> str:
    """:func:`event_id` from the record, without building the body (no URLs minted)."""
    return event_id(
        {
            "attempts": record.attempts,
            "status": record.status.value,
            "stage": record.stage.value if record.stage else None,
            "progress": record.progress,
            "queue_position": position,
        }
    )


def _event(name: str, job: dict) -> bytes:
    return b"id: %s\nevent: %s\ndata: %s\n\n" % (event_id(job).encode(), name.encode(), orjson.dumps(job))


def _finished(job: dict) -> bool:
    return job["status"] in ("succeeded", "failed", "canceled")


async def job_events_response(ctx: ApiContext, job_id: str, last_event_id: str | None, read_job: ReadJob) -> Response:
    """The stream of job ``job_id``, whose bodies ``read_job`` builds (the one builder GET uses).

    Raises ``JobNotFoundError`` (404) before any byte is sent if the job does not exist.
    """
    _, first = await read_job(ctx, job_id)
    if _finished(first) and last_event_id == event_id(first):
        return Response(status_code=204)  # the client saw the end already: EventSource stops here
    stream = _events(ctx, job_id, first, last_event_id, read_job)
    return StreamingResponse(stream, media_type="text/event-stream", headers=HEADERS)


async def _events(ctx: ApiContext, job_id: str, job: dict, last_sent: str | None, read_job: ReadJob) -> AsyncIterator[bytes]:
    settings = ctx.settings.api
    yield b"retry: %d\n\n" % RECONNECT_MS
    started = last_output = time.monotonic()
    while True:
        if event_id(job) != last_sent:
            yield _event("done" if _finished(job) else "update", job)
            if _finished(job):
                return
            last_sent = event_id(job)
            last_output = time.monotonic()
        await asyncio.sleep(settings.events_interval_s)
        now = time.monotonic()
        if now - started > settings.events_max_s:
            return  # the client reconnects with Last-Event-ID
        if now - last_output > KEEP_ALIVE_S:
            yield b": keep-alive\n\n"
            last_output = now
        try:
            record, position, _ = await ctx.store.get_with_position(job_id)
            if _state_id(record, position) != last_sent:
                _, job = await read_job(ctx, job_id)  # only on a change: URLs are minted here
        except JobNotFoundError:
            return  # expired or deleted meanwhile: nothing more will happen
