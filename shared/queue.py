"""Task names, queue names and the Celery configuration both sides share.

The API only *sends* messages (by task name, with the job id only); the worker
consumes them.  Both build their Celery app from :func:`celery_config`, so the
broker options (visibility timeout, restore interval) always agree.
"""

from __future__ import annotations

from typing import Any

from celery import Celery

from shared.settings import Settings

GENERATE_TASK = "jobs.generate"
WEBHOOK_TASK = "webhooks.deliver"
DELIVERY_TASK = "deliveries.upload"
GPU_QUEUE = "gpu"
"""Generation jobs; consumed by one worker process per GPU."""
WEBHOOK_QUEUE = "webhooks"
"""Webhook deliveries and uploads to ``deliver_to`` URLs; no GPU, may be consumed by any worker."""


def celery_config(settings: Settings) -> dict[str, Any]:
    worker = settings.worker
    return {
        "broker_url": settings.redis.url,
        "broker_connection_retry_on_startup": True,
        "broker_transport_options": {
            "visibility_timeout": worker.visibility_timeout_s,
            "unacked_restore_interval": worker.unacked_restore_interval_s,
            "unacked_restore_throttle": 1,
            "global_keyprefix": f"{settings.redis.key_prefix}:celery:",
        },
        "task_default_queue": GPU_QUEUE,
        "task_routes": {
            GENERATE_TASK: {"queue": GPU_QUEUE},
            WEBHOOK_TASK: {"queue": WEBHOOK_QUEUE},
            DELIVERY_TASK: {"queue": WEBHOOK_QUEUE},
        },
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "task_ignore_result": True,
        "result_backend": None,
        "worker_prefetch_multiplier": 1,
        "worker_hijack_root_logger": False,
        "task_serializer": "json",
        "accept_content": ["json"],
    }


def celery_producer(settings: Settings) -> Celery:
    """A Celery app that only sends tasks (the API's)."""
    app = Celery("synchuman-api")
    app.conf.update(celery_config(settings))
    return app
