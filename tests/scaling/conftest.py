"""Two preview workers pinned to different devices, behind one API, on one Redis.

The processes are the project's own commands (uvicorn for the API, the Celery
worker command of docker-compose), started with the service tests' helpers;
each worker gets its own ``CUDA_VISIBLE_DEVICES`` as a GPU host would give it.
On this CPU-only machine the value only travels into the worker's heartbeat,
which is exactly what ``/readyz`` and ``/info`` must report per worker.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
import redis

from shared.jobs import JobRecord
from tests.service.conftest import Stack, redis_url, service_env, wait_until  # noqa: F401 - redis_url is a fixture

DEVICES = ("0", "1")
"""``CUDA_VISIBLE_DEVICES`` of the two workers, as on a two-GPU host."""
PREFIX = "scaling"
JOB_TIMEOUT_S = 240.0
"""Deadline of a few preview jobs on a busy 2-core machine."""


@dataclass
class PinnedStack:
    """The API and one worker per device; ``workers[device]`` is that worker's process."""

    stack: Stack
    redis: redis.Redis

    @property
    def api_url(self) -> str:
        return self.stack.api_url

    @property
    def workers(self):  # noqa: ANN201 - dict[str, ServiceProcess]
        return dict(zip(DEVICES, self.stack.workers))

    def live_workers(self) -> list[dict]:
        """The workers ``/readyz`` lists (their heartbeats)."""
        return httpx.get(f"{self.api_url}/readyz", timeout=5).json()["workers"]

    def submit(self, photo: bytes, options: dict) -> str:
        import json

        response = httpx.post(
            f"{self.api_url}/v1/jobs",
            files={"image": ("person.png", photo, "image/png")},
            data={"options": json.dumps(options)},
            timeout=30,
        )
        assert response.status_code == 202, response.text
        return response.json()["id"]

    def record(self, job_id: str) -> JobRecord:
        """The job record as the store holds it (with its full history)."""
        return JobRecord.model_validate_json(self.redis.get(f"{PREFIX}:job:{job_id}"))

    def wait_finished(self, job_ids: list[str], timeout: float = JOB_TIMEOUT_S) -> list[JobRecord]:
        def finished() -> list[JobRecord] | None:
            records = [self.record(job_id) for job_id in job_ids]
            return records if all(r.status.is_terminal for r in records) else None

        return wait_until(finished, timeout, f"jobs {job_ids} to finish", interval=0.2)


@pytest.fixture(scope="module")
def pinned_stack(redis_url, tmp_path_factory) -> Iterator[PinnedStack]:  # noqa: F811 - the imported fixture
    """Both workers warm; module-scoped because starting them costs tens of seconds here."""
    logs = tmp_path_factory.mktemp("scaling-logs")
    storage_dir = tmp_path_factory.mktemp("scaling-storage")
    env = service_env(
        redis_url, PREFIX, storage={"backend": "local", "local_dir": str(storage_dir), "signing_secret": "scaling"}
    )
    stack = Stack(env=env, logs=logs)
    client = redis.Redis.from_url(redis_url)
    try:
        stack.start_api()
        for device in DEVICES:
            stack.env["CUDA_VISIBLE_DEVICES"] = device  # read at spawn: each worker keeps its own
            stack.start_worker(f"gpu{device}")
        stack.env.pop("CUDA_VISIBLE_DEVICES")
        pinned = PinnedStack(stack=stack, redis=client)

        def both_warm() -> bool:
            for worker in stack.workers:
                if not worker.alive():
                    raise AssertionError(f"a worker exited with {worker.proc.returncode}; see {logs}")
            live = pinned.live_workers()
            return len(live) == len(DEVICES) and all(w["state"] == "warm" for w in live)

        wait_until(both_warm, 180, "both workers to be warm", interval=0.3)
        yield pinned
    finally:
        stack.stop()
        client.close()
