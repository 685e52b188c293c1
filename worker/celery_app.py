"""The worker's Celery app: ``celery -A worker.celery_app worker -P solo -Q gpu,webhooks``.

Run one process per GPU, pinned with ``CUDA_VISIBLE_DEVICES``, with the solo
pool: the pipelines are loaded once by the process-start hook below and stay
warm.  Broker options come from ``shared.queue.celery_config`` (late acks,
prefetch 1, a visibility timeout above the longest job).

Webhook deliveries need no pipelines: a worker started with ``-Q webhooks``
only (``-P threads -c 8`` suits it) loads none and publishes no heartbeat.
"""

from __future__ import annotations

import logging
import os

from celery import Celery, signals

from shared.deployment_secrets import require_deployment_secrets
from shared.errors import ConfigurationError
from shared.queue import GPU_QUEUE, celery_config
from shared.settings import get_settings
from shared.structured_logging import configure_logging

EXIT_PIPELINES_FAILED = 3
"""Exit status of a worker whose pipelines could not be loaded."""
EXIT_CONFIGURATION = 78
"""Exit status of a worker whose settings are unsafe (a missing or published secret): EX_CONFIG."""

log = logging.getLogger("worker")
app = Celery("synchuman-worker")
app.conf.update(celery_config(get_settings()))
app.conf.include = ["worker.tasks"]


@signals.worker_init.connect
def _load_pipelines_in_solo_worker(**_: object) -> None:
    """Process-start hook: the solo pool runs tasks in the main process."""
    from worker.runtime import start_runtime

    configure_logging("worker")
    _refuse_unsafe_settings()
    if _consumes_gpu_queue():
        _start_or_exit(start_runtime)


@signals.worker_process_init.connect
def _load_pipelines_in_child(**_: object) -> None:
    """Process-start hook for prefork children (one pipeline set per child)."""
    from worker.runtime import start_runtime

    if _consumes_gpu_queue():
        _start_or_exit(start_runtime)


def _start_or_exit(start_runtime) -> None:
    """Load the pipelines, or end the process before it consumes a single job.

    Celery logs and swallows exceptions raised in signal handlers, so a worker
    whose model failed to load would otherwise take jobs from the queue and
    lose them.  Exiting lets the supervisor (compose, systemd) restart it and
    leaves every job in the broker for a healthy worker.
    """
    try:
        start_runtime(get_settings())
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
    """SIGTERM: the running job stops at its next step and is requeued (``worker.faults``)."""
    from worker.runtime import current_runtime

    try:
        current_runtime().shutting_down.set()
    except RuntimeError:  # a webhooks-only worker has no runtime
        pass


@signals.worker_shutdown.connect
def _withdraw_heartbeat(**_: object) -> None:
    from worker.runtime import stop_runtime

    stop_runtime()
