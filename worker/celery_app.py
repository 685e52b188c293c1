"""The worker's Celery app: ``celery -A worker.celery_app worker -P solo -Q gpu,webhooks``.

Run one process per GPU, pinned with ``CUDA_VISIBLE_DEVICES``, with the solo
pool: the pipelines are loaded once by the process-start hook below and stay
warm.  Broker options come from ``shared.queue.celery_config`` (late acks,
prefetch 1, a visibility timeout above the longest job).
"""

from __future__ import annotations

import logging

from celery import Celery, signals

from shared.queue import celery_config
from shared.settings import get_settings

app = Celery("synchuman-worker")
app.conf.update(celery_config(get_settings()))
app.conf.include = ["worker.tasks"]


@signals.worker_init.connect
def _load_pipelines_in_solo_worker(**_: object) -> None:
    """Process-start hook: the solo pool runs tasks in the main process."""
    from worker.runtime import start_runtime

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    start_runtime(get_settings())


@signals.worker_process_init.connect
def _load_pipelines_in_child(**_: object) -> None:
    """Process-start hook for prefork children (one pipeline set per child)."""
    from worker.runtime import start_runtime

    start_runtime(get_settings())


@signals.worker_shutdown.connect
def _withdraw_heartbeat(**_: object) -> None:
    from worker.runtime import stop_runtime

    stop_runtime()
