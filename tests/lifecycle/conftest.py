"""The lifecycle tests' stack: redis-server, a GPU-queue worker, a webhook worker, uvicorn, a receiver.

Everything runs as real processes on loopback with ports picked at run time
(helpers from ``tests.hardening.processes``).  The webhook retry schedule is
compressed through settings (1 s, then 2 s; two retries) so a retry is seen
in seconds, and the receiver's address is allowlisted: every other loopback
or private address stays refused.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from shared.webhook_signature import generate_secret
from tests.hardening.processes import RedisServer, ServiceProcess, free_port, generated_secrets, wait_until
from tests.lifecycle.receiver import WebhookReceiver

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
                interval_s=0.2,
            )

    def logs(self) -> str:
        return "\n".join(f"--- {p.name} ---\n{p.output()[-4000:]}" for p in self.processes)


@pytest.fixture(scope="session")
def sample_photo(sample_photos) -> Path:
    return sample_photos[0]


@pytest.fixture(scope="session")
def receiver() -> Iterator[WebhookReceiver]:
    server = WebhookReceiver().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def lifecycle_stack(tmp_path_factory, receiver) -> Iterator[LifecycleStack]:
    workdir = tmp_path_factory.mktemp("lifecycle")
    redis_server = RedisServer(workdir, aof=False).start()
    port = free_port()
    secret = generate_secret()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYNCHUMAN_")}
    env.update(
        {
            "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
            "PYTHONUNBUFFERED": "1",
            "SYNCHUMAN_REDIS__URL": redis_server.url,
            "SYNCHUMAN_REDIS__KEY_PREFIX": PREFIX,
            "SYNCHUMAN_STORAGE__LOCAL_DIR": str(workdir / "storage"),
            "SYNCHUMAN_STORAGE__PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
            "SYNCHUMAN_WORKER__PIPELINE": "preview",
            "SYNCHUMAN_WORKER__HEARTBEAT_INTERVAL_S": "0.5",
            "SYNCHUMAN_WORKER__HEARTBEAT_TTL_S": "5",
            **generated_secrets(),
            "SYNCHUMAN_WEBHOOKS__SECRET": secret,
            "SYNCHUMAN_WEBHOOKS__ALLOW_HOSTS": '["127.0.0.1"]',
            "SYNCHUMAN_API__GENERATE_TIMEOUT_S": str(JOB_TIMEOUT_S),
            **RETRY_ENV,
        }
    )
    celery = [sys.executable, "-m", "celery", "-A", "worker.celery_app", "worker", "--without-mingle",
              "--without-gossip", "--without-heartbeat", "--loglevel", "INFO"]
    processes = [
        ServiceProcess("gpu-worker", [*celery, "-P", "solo", "-Q", "gpu", "-n", "gpu@%h"], env, workdir),
        ServiceProcess("webhook-worker", [*celery, "-P", "threads", "-c", "4", "-Q", "webhooks", "-n", "hooks@%h"],
                       env, workdir),
        ServiceProcess("api", [sys.executable, "-m", "uvicorn", "api.app:create_app", "--factory", "--host",
                               "127.0.0.1", "--port", str(port), "--no-access-log"], env, workdir),
    ]
    stack = LifecycleStack(f"http://127.0.0.1:{port}", redis_server.url, secret, workdir / "storage", receiver, processes)
    try:
        for process in processes:
            process.start()

        def ready() -> bool:
            for process in processes:
                if not process.alive():
                    raise AssertionError(f"{process.name} exited:\n{process.output()[-3000:]}")
            return httpx.get(f"{stack.api_url}/readyz", timeout=5).status_code == 200

        wait_until(ready, 180, "a warm worker behind the API", interval_s=0.3)
        yield stack
    finally:
        for process in processes:
            process.stop()
        redis_server.stop()


@pytest.fixture(scope="session")
def webhook_job(lifecycle_stack, sample_photo) -> dict:
    """A job subscribed to every webhook event (at ``/hooks/all``), run to success."""
    created = submit(
        lifecycle_stack,
        sample_photo,
        webhook_url=lifecycle_stack.receiver.url("/hooks/all"),
        webhook_events="started,stage1.completed,completed",
    )
    assert created.status_code == 202, created.text
    return lifecycle_stack.wait_job(created.json()["id"])


@pytest.fixture()
def stack(lifecycle_stack, request) -> Iterator[LifecycleStack]:
    """The session's stack, with its process logs attached to a failing test's report."""
    yield lifecycle_stack
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        print(lifecycle_stack.logs())


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.when == "call":
        item.rep_call = report


def submit(stack: LifecycleStack, photo: Path, *, options: dict | None = None, headers: dict | None = None,
           **fields: str) -> httpx.Response:
    """POST /v1/jobs with a photo file, JSON options and extra form fields."""
    import json

    data = {"options": json.dumps(options if options is not None else FAST_OPTIONS), **fields}
    with stack.client() as http:
        return http.post("/v1/jobs", data=data, files={"image": (photo.name, photo.read_bytes(), "image/png")},
                         headers=headers or {})
