"""The webhook stack: redis-server, a GPU-queue worker, a webhook worker, uvicorn, a receiver.

Everything runs as real processes on loopback with ports picked at run time
(the launcher in ``client.stack``; fixtures ``lifecycle_stack`` and
``webhook_stack`` in ``tests/conftest.py``).  The webhook retry schedule is
compressed through settings (1 s, then 2 s; two retries) so a retry is seen
in seconds, and the receiver's address is allowlisted: every other loopback
or private address stays refused.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from client.stack import ServiceStack, wait_until
from tests.support.webhook_receiver import WebhookReceiver

FAST_OPTIONS = {"texture_size": 512, "simplify": 0.95, "stage1_steps": 2, "stage2_steps": 2}
"""Options that keep preview jobs short on a CPU-only test machine."""
SLOW_OPTIONS = {"texture_size": 2048, "simplify": 0.5}
"""Options that keep the worker busy long enough to cancel it mid-run."""
RETRY_ENV = {
    "SYNCHUMAN_WEBHOOKS__FIRST_RETRY_S": "1",
    "SYNCHUMAN_WEBHOOKS__BACKOFF_FACTOR": "2",
    "SYNCHUMAN_WEBHOOKS__MAX_RETRIES": "2",
    "SYNCHUMAN_WEBHOOKS__JITTER": "0.1",
    "SYNCHUMAN_WEBHOOKS__TIMEOUT_S": "5",
}
PREFIX = "lifecycle"
JOB_TIMEOUT_S = 240.0
"""Deadline of one preview job on a busy 2-core machine."""


@dataclass
class LifecycleStack:
    """The running stack: its processes (``services``), its Redis and the webhook receiver."""

    services: ServiceStack
    redis_url: str
    receiver: WebhookReceiver

    @property
    def api_url(self) -> str:
        return self.services.api_url

    @property
    def secret(self) -> str:
        """The webhook signing secret the stack was started with."""
        return self.services.env["SYNCHUMAN_WEBHOOKS__SECRET"]

    @property
    def storage_dir(self) -> Path:
        return Path(self.services.env["SYNCHUMAN_STORAGE__LOCAL_DIR"])

    def client(self, timeout: float = 30.0) -> httpx.Client:
        return httpx.Client(base_url=self.api_url, timeout=timeout, trust_env=False)

    def wait_job(self, job_id: str, done: Callable[[dict], bool] | None = None, timeout: float = JOB_TIMEOUT_S) -> dict:
        """Poll the job until ``done`` (default: a terminal status), with a deadline."""
        done = done or (lambda job: job["status"] in ("succeeded", "failed", "canceled"))
        with self.client() as http:
            return wait_until(
                lambda: (job := http.get(f"/v1/jobs/{job_id}").json()) and done(job) and job,
                timeout,
                f"job {job_id}",
                interval=0.2,
            )

    def logs(self) -> str:
        return self.services.logs()


def start_lifecycle_stack(workdir: Path, redis_url: str, receiver: WebhookReceiver) -> LifecycleStack:
    """The API, a GPU-queue worker and a webhook worker (4 threads) under key prefix :data:`PREFIX`,
    waited for until ``/readyz`` reports a warm worker; stopped with ``stack.services.stop()``."""
    services = ServiceStack(
        workdir,
        redis_url,
        prefix=PREFIX,
        SYNCHUMAN_WORKER__HEARTBEAT_INTERVAL_S="0.5",
        SYNCHUMAN_WORKER__HEARTBEAT_TTL_S="5",
        SYNCHUMAN_WEBHOOKS__ALLOW_HOSTS='["127.0.0.1"]',
        SYNCHUMAN_API__GENERATE_TIMEOUT_S=str(JOB_TIMEOUT_S),
        **RETRY_ENV,
    )
    try:
        services.start_worker(name="gpu-worker", queues="gpu")
        services.start_worker(name="webhook-worker", queues="webhooks", pool="threads", concurrency=4)
        services.start_api()
        services.wait_ready(timeout=180)
    except BaseException as exc:
        logs = services.logs()
        services.stop()
        raise RuntimeError(f"the lifecycle stack did not start: {exc}\n{logs}") from exc
    return LifecycleStack(services, redis_url, receiver)


def submit(stack: LifecycleStack, photo: Path, *, options: dict | None = None, headers: dict | None = None,
           **fields: str) -> httpx.Response:
    """POST /v1/jobs with a photo file, JSON options and extra form fields."""
    import json

    data = {"options": json.dumps(options if options is not None else FAST_OPTIONS), **fields}
    with stack.client() as http:
        return http.post("/v1/jobs", data=data, files={"image": (photo.name, photo.read_bytes(), "image/png")},
                         headers=headers or {})
