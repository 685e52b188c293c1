"""The Celery message of a generation job, written by the job store itself.

A submission must leave Redis with both the queued job record and the Celery
message that makes a worker run it, or with neither: a record without its
message would stay queued forever.  So the API does not call ``send_task``
after writing the record; the job store writes the record and pushes the
message in one Lua script (``shared.job_store``).

The message is exactly the one Celery's own producer would push.  It is not
rebuilt by hand: :func:`capture_generate_message` lets Celery's ``send_task``
publish one message for a placeholder job id through kombu's Redis transport
inside a publish batch, takes the ``LPUSH`` that batch would have run (the list
key, with its global key prefix and priority suffix, and the JSON envelope:
protocol v2 headers, base64 body, routing, priority, delivery tag), and
discards it unsent.  :meth:`TaskMessageTemplate.render` then puts a job's id
where the placeholder was and a fresh delivery tag where the captured one was,
which is all that differs between two ``send_task`` calls of this task from
one process.
"""

from __future__ import annotations

import base64
import json
import uuid
from dataclasses import dataclass
from urllib.parse import urlsplit

from celery import Celery

from shared.errors import ServiceUnavailableError


@dataclass(frozen=True)
class TaskMessageTemplate:
    """One task's captured message, with placeholders for what changes per job."""

    list_key: str
    """The Redis list the worker consumes (``LPUSH`` target)."""
    envelope: str
    """The JSON envelope with ``placeholder``, ``delivery_tag`` and ``body`` still in it."""
    body: str
    """The decoded message body (JSON ``[args, kwargs, embed]``) with ``placeholder`` in it."""
    encoded_body: str
    """``body`` base64-encoded as it appears in ``envelope``."""
    placeholder: str
    """The id the captured message was built for (a uuid4 hex, so every field keeps its length)."""
    delivery_tag: str

    def render(self, job_id: str) -> str:
        """The message ``send_task(task, args=[job_id], task_id=job_id, ...)`` would push."""
        body = base64.b64encode(self.body.replace(self.placeholder, job_id).encode()).decode()
        return (
            self.envelope.replace(self.encoded_body, body, 1)
            .replace(self.delivery_tag, str(uuid.uuid4()), 1)
            .replace(self.placeholder, job_id)
        )


def shares_job_store(producer: Celery, job_store_url: str) -> bool:
    """True when the broker is the job store's own Redis database, so one script can write both."""
    broker_url = producer.conf.broker_url or ""
    return urlsplit(broker_url).scheme in ("redis", "unix") and broker_url == job_store_url


def capture_generate_message(producer: Celery, task_name: str, queue: str) -> TaskMessageTemplate:
    """Capture the message ``producer.send_task(task_name, ..., queue=queue)`` publishes (see above).

    Publishing declares the queue's binding on the broker, as ``send_task``
    does; the message itself is discarded.  Raises :class:`~shared.errors.ServiceUnavailableError`
    if the transport did not produce a single ``LPUSH``.
    """
    placeholder = uuid.uuid4().hex
    with producer.producer_or_acquire() as kombu_producer:
        with kombu_producer.batch() as batch:
            producer.send_task(task_name, args=[placeholder], task_id=placeholder, queue=queue, producer=kombu_producer)
            session = batch.state.session
            commands = [args for args, _ in session.pipeline.command_stack] if session is not None else []
            batch.state.abort()
    if len(commands) != 1 or commands[0][0].upper() != "LPUSH" or len(commands[0]) != 3:
        raise ServiceUnavailableError(f"unexpected broker commands for one task message: {[c[0] for c in commands]}")
    _, list_key, envelope = commands[0]
    envelope = envelope.decode() if isinstance(envelope, bytes) else envelope
    list_key = list_key.decode() if isinstance(list_key, bytes) else list_key
    message = json.loads(envelope)
    properties = message["properties"]
    if properties.get("body_encoding") != "base64" or message["headers"].get("id") != placeholder:
        raise ServiceUnavailableError("the broker message is not a base64 protocol-2 task message")
    encoded_body = message["body"]
    return TaskMessageTemplate(
        list_key=list_key,
        envelope=envelope,
        body=base64.b64decode(encoded_body).decode(),
        encoded_body=encoded_body,
        placeholder=placeholder,
        delivery_tag=properties["delivery_tag"],
    )
