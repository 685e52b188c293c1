"""The worker's Celery app: ``celery -A worker.celery_app worker -P solo -Q gpu,webhooks``.

Run one process per GPU, pinned with ``CUDA_VISIBLE_DEVICES``, with the solo
pool: the pipelines are loaded once by the process-start hook below and stay
warm.  Broker options come from ``shared.queue.celery_config`` (late acks,
prefetch 1, a visibility timeout above the longest job).

Webhook deliveries and ``deliver_to`` uploads need no pipelines: a worker
started with ``-Q webhooks`` only (``-P threads -c 8`` suits it) loads none and
publishes no heartbeat.

This module is the top of the worker: the app, its process signals and the
tasks it registers (``worker.tasks``).  It hands the runtime an ``announce``
callable that queues webhook events (and a succeeded job's uploads) through
this app, so nothing below it imports the app.
"""

from __future__ import annotations

import logging
import os

from celery import Celery, signals

from shared.deployment_secrets import require_deployment_secrets
from shared.errors import ConfigurationError
from shared.jobs import JobRecord, JobStatus
from shared.queue import DELIVERY_TASK, GENERATE_TASK, GPU_QUEUE, WEBHOOK_TASK, celery_config
from shared.settings import get_settings
from shared.structured_logging import configure_logging
from shared.webhooks import WebhookEvent
from worker import tasks
from worker.deliveries import fire_deliveries
from worker.runtime import current_runtime, start_runtime, stop_runtime
from worker.webhooks import announcer

EXIT_PIPELINES_FAILED = 3
"""Exit status of a worker whose pipelines could not be loaded."""
EXIT_CONFIGURATION = 78
"""Exit status of a worker whose settings are unsafe (a missing or published secret): EX_CONFIG."""

log = logging.getLogger("worker")
app = Celery("synchuman-worker")
app.conf.update(celery_config(get_settings()))
app.task(name=GENERATE_TASK, base=tasks.JobTask, acks_late=True)(tasks.generate)
app.task(name=WEBHOOK_TASK, bind=True, acks_late=True)(tasks.deliver_webhook)
app.task(name=DELIVERY_TASK, bind=True, acks_late=True)(tasks.upload_artifact)
_announce_webhook = announcer(app)


def announce(record: JobRecord, event: WebhookEvent) -> None:
    """Queue ``event`` through this app; the ending of a succeeded job also queues its uploads
    (``deliver_to``), once, as ``completed`` is announced only by the write that ended the job."""
    _announce_webhook(record, event)
    if event is WebhookEvent.completed and record.status is JobStatus.succeeded:
        fire_deliveries(record, app)


@signals.worker_init.connect
def _load_pipelines_in_solo_worker(**_: object) -> None:
    """Process-start hook: the solo pool runs tasks in the main process."""
    configure_logging("worker")
    _refuse_unsafe_settings()
    if _consumes_gpu_queue():
        _start_or_exit()


@signals.worker_process_init.connect
def _load_pipelines_in_child(**_: object) -> None:
    """Process-start hook for prefork children (one pipeline set per child)."""
    if _consumes_gpu_queue():
        _start_or_exit()


def _start_or_exit() -> None:
    """Load the pipelines, or end the process before it consumes a single job.

    Celery logs and swallows exceptions raised in signal handlers, so a worker
    whose model failed to load would otherwise take jobs from the queue and
    lose them.  Exiting lets the supervisor (compose, systemd) restart it and
    leaves every job in the broker for a healthy worker.
    """
    try:
        start_runtime(get_settings(), announce)
    except Exception:
        log.critical("pipelines failed to load; worker exits without consuming jobs", exc_info=True)
        logging.shutdown()
        os._exit(EXIT_PIPELINES_FAILED)


def _refuse_unsafe_settings() -> None:
    """End the process before it consumes a job when a deployment secret is missing or public."""
    try:
        require_deployment_secrets(get_settings())
    except ConfigurationError as exc:
        log.critical(exc.message)
        logging.shutdown()
        os._exit(EXIT_CONFIGURATION)


def _consumes_gpu_queue() -> bool:
    """False for a worker started for other queues only (``-Q webhooks``)."""
    consumed = app.amqp.queues.consume_from
    return not consumed or GPU_QUEUE in consumed


@signals.worker_shutting_down.connect
def _release_running_job(**_: object) -> None:
    """SIGTERM: the running job stops at its next step and is given back to the queue."""
    try:
        current_runtime().shutting_down.set()
    except RuntimeError:  # a webhooks-only worker has no runtime
        pass


@signals.worker_shutdown.connect
def _withdraw_heartbeat(**_: object) -> None:
    stop_runtime()
