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

from client.stack import ServiceProcess, wait_until
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
    api_url: str
    redis_url: str
    secret: str
    storage_dir: Path
    receiver: WebhookReceiver
    processes: list[ServiceProcess]

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
        return "\n".join(f"--- {p.name} ---\n{p.output()[-4000:]}" for p in self.processes)


def submit(stack: LifecycleStack, photo: Path, *, options: dict | None = None, headers: dict | None = None,
           **fields: str) -> httpx.Response:
    """POST /v1/jobs with a photo file, JSON options and extra form fields."""
    import json

    data = {"options": json.dumps(options if options is not None else FAST_OPTIONS), **fields}
    with stack.client() as http:
        return http.post("/v1/jobs", data=data, files={"image": (photo.name, photo.read_bytes(), "image/png")},
                         headers=headers or {})
