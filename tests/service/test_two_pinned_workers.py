"""Two workers pinned to two devices of one host share the queue (issue 8, the CPU scenario).

What a two-GPU host must show, with the CPU preview pipeline standing in for
the model: both workers take jobs at the same time, no job runs twice,
``/readyz`` and ``/info`` list each worker with its device, and a worker
stopped mid-job hands its job to the other, which finishes it exactly once.
Run intervals come from the job records (``started_at``/``finished_at``,
``worker_id``, ``history``), never from the test's own clock.

The processes are the project's own commands (uvicorn for the API, the Celery
worker command of docker-compose); each worker gets its own
``CUDA_VISIBLE_DEVICES`` as a GPU host would give it.  On this CPU-only machine
the value only travels into the worker's heartbeat, which is exactly what
``/readyz`` and ``/info`` must report per worker.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
import redis

from client.stack import wait_until
from shared.jobs import JobRecord, JobStatus
from tests.support.service_stack import FAST_OPTIONS, Stack, service_env

pytestmark = pytest.mark.slow

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
def pinned_stack(redis_url, tmp_path_factory) -> Iterator[PinnedStack]:
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


QUICK_OPTIONS = {**FAST_OPTIONS, "stage1_steps": 2, "stage2_steps": 2}
"""Short jobs for the concurrency check (their number, not their length, matters)."""


def test_readyz_and_info_list_both_workers_with_their_device(pinned_stack: PinnedStack):
    ready = httpx.get(f"{pinned_stack.api_url}/readyz", timeout=5)
    assert ready.status_code == 200
    body = ready.json()
    assert body["checks"]["workers"] == {"ok": True, "detail": f"{len(DEVICES)} warm of {len(DEVICES)}"}
    by_device = {w["cuda_visible_devices"]: w for w in body["workers"]}
    assert sorted(by_device) == sorted(DEVICES)
    for device, worker in pinned_stack.workers.items():
        assert by_device[device]["pid"] == worker.pid
        assert by_device[device]["state"] == "warm"
        assert by_device[device]["pipeline"] == "preview"

    info = httpx.get(f"{pinned_stack.api_url}/info", timeout=5).json()
    listed = {w["gpus"]: w for w in info["workers"]}
    assert sorted(listed) == sorted(DEVICES)
    assert {listed[d]["id"] for d in DEVICES} == {by_device[d]["worker_id"] for d in DEVICES}
    assert all(listed[d]["state"] == "warm" for d in DEVICES)
    [preview] = [p for p in info["pipelines"] if p["name"] == "preview"]
    assert preview["warm_workers"] == len(DEVICES)


def test_both_workers_run_jobs_at_once_and_no_job_runs_twice(pinned_stack: PinnedStack, sample_photos):
    photo = sample_photos[0].read_bytes()
    job_ids = [pinned_stack.submit(photo, QUICK_OPTIONS) for _ in range(4)]
    records = pinned_stack.wait_finished(job_ids)

    for record in records:
        assert record.status is JobStatus.succeeded, record.error
        assert record.attempts == 1
        assert [e.status for e in record.history] == [JobStatus.running, JobStatus.succeeded]
    workers = {r.worker_id for r in records}
    assert len(workers) == len(DEVICES), f"all jobs ran on {workers}"

    # Two jobs of different workers whose run intervals overlap: both devices worked at once.
    overlaps = [
        min(a.finished_at, b.finished_at) - max(a.started_at, b.started_at)
        for a in records
        for b in records
        if a.worker_id < b.worker_id
    ]
    assert max(overlaps) > 0, f"no two workers ran at the same time: {overlaps}"
    # A worker runs one job at a time (solo pool, prefetch 1): its own intervals never overlap.
    for worker in workers:
        mine = sorted((r.started_at, r.finished_at) for r in records if r.worker_id == worker)
        assert all(end <= next_start for (_, end), (next_start, _) in zip(mine, mine[1:]))


def test_a_worker_stopped_mid_job_hands_it_to_the_other_which_finishes_it_once(
    pinned_stack: PinnedStack, sample_photos
):
    began = time.time()
    job_id = pinned_stack.submit(sample_photos[0].read_bytes(), FAST_OPTIONS)

    def in_model_stage():
        record = pinned_stack.record(job_id)
        return record if record.status is JobStatus.running and record.stage in ("stage1", "stage2") else None

    running = wait_until(in_model_stage, 120, "the job to be inside a model stage", interval=0.05)
    assert pinned_stack.redis.hlen(f"{PREFIX}:celery:unacked") == 1  # its message, held until the job ends
    heartbeats = {w["worker_id"]: w for w in pinned_stack.live_workers()}
    busy_device = heartbeats[running.worker_id]["cuda_visible_devices"]
    busy = pinned_stack.workers[busy_device]
    [other_device] = [d for d in DEVICES if d != busy_device]

    def idle_worker_beat_after_test_began():
        # A worker counts a job just after its "warm" beat, so only a later beat has the count.
        [other] = [w for w in pinned_stack.live_workers() if w["cuda_visible_devices"] == other_device]
        return other if other["seen_at"] > began + 0.5 else None

    done_before = wait_until(idle_worker_beat_after_test_began, 10, "a fresh heartbeat")["jobs_done"]

    busy.signal(signal.SIGTERM)  # what `docker compose stop` sends
    assert busy.wait(30) == 0  # a warm shutdown: the job was released, not waited for

    final = pinned_stack.wait_finished([job_id])[0]
    assert final.status is JobStatus.succeeded, final.error
    assert final.worker_id != running.worker_id
    assert final.pipeline is not None and final.pipeline["device"] == "cpu"
    statuses = [e.status for e in final.history]
    # Given back to the queue once (truthfully queued meanwhile), then run by the other worker.
    assert statuses == [JobStatus.running, JobStatus.queued, JobStatus.running, JobStatus.succeeded]
    assert final.attempts == 1  # the released attempt does not count against the job

    # Only the other worker is left, with exactly one more job done; the broker holds nothing more.
    def survivor_done():
        live = pinned_stack.live_workers()
        return live if len(live) == 1 and live[0]["jobs_done"] > done_before and live[0]["state"] == "warm" else None

    [survivor] = wait_until(survivor_done, 15, "the stopped worker's heartbeat to go")
    assert survivor["worker_id"] == final.worker_id
    assert survivor["cuda_visible_devices"] == other_device
    assert survivor["jobs_done"] == done_before + 1
    assert pinned_stack.redis.llen(f"{PREFIX}:celery:gpu") == 0
    wait_until(lambda: pinned_stack.redis.hlen(f"{PREFIX}:celery:unacked") == 0, 10, "the message to be acknowledged")
