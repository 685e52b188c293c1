"""The fault tests' stack: the service on fault-injection pipelines, over the launcher in ``client.stack``.

Every process picks a free loopback port, writes its output to a log file in the
test's temporary folder (``Stack.logs()``, printed when a test fails), and
every wait has a deadline.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import httpx
import redis

from bench.quick_pipelines import tiny_person_png
from client.stack import (
    RedisServer,
    ServiceProcess,
    ServiceStack,
    api_process,
    free_port,
    wait_until,
    worker_process,
)
from client.stack import service_env as stack_env

RECOVERY_SETTINGS = {
    "SYNCHUMAN_WORKER__VISIBILITY_TIMEOUT_S": "6",
    "SYNCHUMAN_WORKER__UNACKED_RESTORE_INTERVAL_S": "1",
    "SYNCHUMAN_WORKER__HEARTBEAT_INTERVAL_S": "0.5",
}
"""Fast recovery knobs: a lost job is redelivered within seconds."""


def service_env(redis_url: str, storage_dir: Path, **extra: str) -> dict[str, str]:
    """Environment of one service process started alone: loopback Redis, local storage, fast recovery."""
    return stack_env(redis_url, SYNCHUMAN_STORAGE__LOCAL_DIR=str(storage_dir), **{**RECOVERY_SETTINGS, **extra})


def celery_worker(name: str, env: dict[str, str], workdir: Path) -> ServiceProcess:
    return worker_process(name, env, workdir)


def uvicorn_api(name: str, env: dict[str, str], workdir: Path, port: int) -> ServiceProcess:
    return api_process(name, env, workdir, port, "--timeout-graceful-shutdown", "20")


def probe_healthz(prober: httpx.Client, seconds: float) -> list[float]:
    """Latencies (ms) of ``GET /healthz`` sent one after another for ``seconds``."""
    latencies_ms = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        started = time.perf_counter()
        assert prober.get("/healthz").status_code == 200
        latencies_ms.append((time.perf_counter() - started) * 1000)
        time.sleep(0.01)
    return latencies_ms


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (Linux /proc), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


FAULT_FACTORY = "tests.support.fault_pipelines:load_fault_pipelines"


class Stack(ServiceStack):
    """Redis (AOF), one uvicorn API and any number of workers on the fault-injection pipelines,
    with the job store read directly (records, their history, failure counts)."""

    def __init__(self, workdir: Path, redis_server: RedisServer, **env: str) -> None:
        defaults = {**RECOVERY_SETTINGS, "SYNCHUMAN_WORKER__PIPELINE_FACTORY": FAULT_FACTORY}
        super().__init__(workdir, redis_server.url, prefix=f"h{free_port()}", **{**defaults, **env})
        self.redis = redis_server

    def start_api(self) -> Stack:
        super().start_api("--timeout-graceful-shutdown", "20")
        return self

    def wait_warm(self, count: int = 1, timeout_s: float = 90) -> None:
        super().wait_warm(count, timeout_s)

    def submit(self, *, steps: int | None = None, token: str | None = None, expect: int = 202) -> str:
        return self.submit_options({"stage1_steps": steps} if steps is not None else {}, token=token, expect=expect)

    def submit_options(self, options: dict, *, token: str | None = None, expect: int = 202, **fields: str) -> str:
        response = self.post_job(tiny_person_png(), options, token=token, **fields)
        assert response.status_code == expect, response.text
        return response.json()["id"] if expect == 202 else ""

    def record(self, job_id: str):
        from shared.job_store import JobStore

        client = redis.Redis.from_url(self.redis.url)
        try:
            return JobStore(client, prefix=self.prefix, retention_s=3600).get(job_id)
        finally:
            client.close()

    def failures_counted(self) -> dict[str, int]:
        """``/metrics``' failures by code, as the job store counted them."""
        client = redis.Redis.from_url(self.redis.url)
        try:
            raw = client.hgetall(f"{self.prefix}:metrics:failures")
        finally:
            client.close()
        return {k.decode(): int(v) for k, v in raw.items()}

    def wait_status(self, job_id: str, statuses: set[str], timeout_s: float = 60):
        def reached():
            record = self.record(job_id)
            return record if record.status.value in statuses else None

        return wait_until(reached, timeout_s, f"job {job_id} to reach {sorted(statuses)}", errors=(redis.RedisError,))

    def wait_terminal(self, job_id: str, timeout_s: float = 60):
        return self.wait_status(job_id, {"succeeded", "failed", "canceled"}, timeout_s)
