"""Two worker processes on one GPU: one job's export overlaps the next job's stages.

The stack is the service as compose runs it with ``SYNCHUMAN_WORKERS_PER_GPU=2``:
Redis, the API under uvicorn, two Celery worker processes consuming the ``gpu``
queue (here the CPU ``preview`` pipeline, whose export is a slow stand-in:
``tests.worker.slow_export_pipelines``) and a webhook worker, with a loopback
receiver for the webhooks.  Every assertion reads what a client can read: job
records, ``/readyz`` and the webhook calls over HTTP (the kill test also lists
the job's stored files).

* two jobs submitted together run at once: the second job's stage 1 starts
  before the first job's export ends (the records' ``stage_started_at``), and
  the export ran on its share of the cores (``worker.workers_per_gpu``);
* a job canceled during its export ends ``canceled`` within a step or two, fires
  each event it promised once, and its worker takes the next job;
* a job whose worker is killed (SIGKILL) during its export is finished once, by
  the other worker: one ``completed`` webhook, one set of artifacts.

The tests share one stack and run in file order (the last one kills a worker).
"""

from __future__ import annotations

import io
import json
import signal
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from client.stack import RedisServer, ServiceProcess, ServiceStack, wait_until
from tests.support.webhook_receiver import WebhookReceiver
from tests.worker.slow_export_pipelines import EXPORT_STEP_S, EXPORT_STEPS, LONG_EXPORT_STEPS

pytestmark = pytest.mark.slow

WORKERS_PER_GPU = 2
TURN_SLACK_S = 0.5
"""Clock and write-order slack between two workers' stamps of one hand-over of the GPU."""
FACTORY = "tests.worker.slow_export_pipelines:load_preview_with_slow_export"
FAST_OPTIONS = {"texture_size": 512, "simplify": 0.95}
"""A short preview job on a CPU-only test machine."""
EVENTS = "started,stage1.completed,completed"
JOB_TIMEOUT_S = 120.0
"""Deadline of one preview job with both workers busy on a loaded 2-core machine."""
CANCEL_WITHIN_S = 3.0
"""A job canceled during its export is ``canceled`` this soon (the export checks every ``EXPORT_STEP_S``)."""
TERMINAL = ("succeeded", "failed", "canceled")


class OverlapStack(ServiceStack):
    """The API, two preview workers on the ``gpu`` queue and a webhook worker, read over HTTP."""

    def __init__(self, workdir: Path, redis_url: str, receiver: WebhookReceiver) -> None:
        super().__init__(
            workdir,
            redis_url,
            SYNCHUMAN_WORKER__PIPELINE_FACTORY=FACTORY,
            SYNCHUMAN_WORKER__WORKERS_PER_GPU=str(WORKERS_PER_GPU),
            SYNCHUMAN_WORKER__HEARTBEAT_INTERVAL_S="0.5",
            SYNCHUMAN_WORKER__HEARTBEAT_TTL_S="3",
            SYNCHUMAN_WORKER__RECOVERY_INTERVAL_S="0.5",
            SYNCHUMAN_WEBHOOKS__ALLOW_HOSTS='["127.0.0.1"]',
        )
        self.receiver = receiver
        self.http = httpx.Client(base_url=self.api_url, timeout=30, trust_env=False)

    def start(self, photo: bytes) -> OverlapStack:
        self.photo = photo
        self.start_api()
        self.gpu_workers = [self.start_worker(queues="gpu") for _ in range(WORKERS_PER_GPU)]
        self.start_worker(queues="webhooks", pool="threads", concurrency=4)
        self.wait_warm(WORKERS_PER_GPU, timeout=180)
        return self

    def stop(self) -> None:
        self.http.close()
        super().stop()

    def submit(self, name: str, **options: object) -> str:
        response = self.post_job(self.photo, {**FAST_OPTIONS, **options},
                                 webhook_url=self.receiver.url(f"/hooks/{name}"), webhook_events=EVENTS)
        assert response.status_code == 202, response.text
        return response.json()["id"]

    def job(self, job_id: str) -> dict:
        return self.http.get(f"/v1/jobs/{job_id}").json()

    def wait_job(self, job_id: str, done, what: str, timeout: float = JOB_TIMEOUT_S, interval: float = 0.05) -> dict:
        return wait_until(lambda: (job := self.job(job_id)) and done(job) and job, timeout, what, interval=interval)

    def wait_terminal(self, job_id: str, timeout: float = JOB_TIMEOUT_S) -> dict:
        return self.wait_job(job_id, lambda job: job["status"] in TERMINAL, f"job {job_id} to finish", timeout, 0.2)

    def wait_in_export(self, job_id: str) -> dict:
        return self.wait_job(job_id, lambda job: job["status"] == "running" and job["stage"] == "export",
                             f"job {job_id} to be in its export")

    def live_workers(self) -> list[dict]:
        """The live workers as ``/readyz`` lists them (pid, state, current job, jobs done)."""
        return self.http.get("/readyz").json()["workers"]

    def worker_running(self, job_id: str) -> dict:
        """The live worker whose heartbeat names ``job_id`` as its current job."""
        def running() -> dict | None:
            return next((w for w in self.live_workers() if w["current_job"] == job_id), None)

        return wait_until(running, 10, f"a worker running job {job_id}", interval=0.05)

    def process(self, pid: int) -> ServiceProcess:
        [process] = [p for p in self.gpu_workers if p.pid == pid]
        return process

    def events(self, name: str) -> list[tuple[str, dict]]:
        """``(event, job body)`` of every webhook call made for the job submitted as ``name``."""
        return [(call.headers["webhook-event"], json.loads(call.body))
                for call in self.receiver.calls_to(f"/hooks/{name}")]

    def completed(self, name: str) -> list[dict]:
        """The job bodies of ``name``'s ``completed`` calls, once at least one arrived."""
        wait_until(lambda: any(event == "completed" for event, _ in self.events(name)), 30,
                   f"the completed webhook of {name}")
        return [body for event, body in self.events(name) if event == "completed"]


@pytest.fixture(scope="module")
def stack(tmp_path_factory, sample_photos) -> Iterator[OverlapStack]:
    workdir = tmp_path_factory.mktemp("export-overlap")
    redis_server = RedisServer(workdir, aof=False).start()
    receiver = WebhookReceiver().start()
    stack = OverlapStack(workdir, redis_server.url, receiver)
    try:
        stack.start(sample_photos[0].read_bytes())
        yield stack
    finally:
        stack.stop()
        receiver.stop()
        redis_server.stop()


@pytest.fixture()
def logs_on_failure(stack, request) -> Iterator[OverlapStack]:
    """The stack, with its processes' logs printed under a failing test's report."""
    failed_before = request.session.testsfailed
    yield stack
    if request.session.testsfailed > failed_before:
        print(stack.logs())


def export_window(job: dict) -> tuple[float, float]:
    """(start, end) of a succeeded job's export: from entering ``export`` to entering ``upload``."""
    stages = job["stage_started_at"]
    return stages["export"], stages["upload"]


def results_metadata(job: dict) -> dict:
    archive = httpx.get(job["outputs"]["results.zip"]["url"], timeout=30, trust_env=False)
    assert archive.status_code == 200
    with zipfile.ZipFile(io.BytesIO(archive.content)) as zipped:
        return json.loads(zipped.read("results_metadata.json"))


def test_two_jobs_submitted_together_overlap_one_export_with_the_other_jobs_stages(logs_on_failure) -> None:
    stack = logs_on_failure
    done_before = {worker["pid"]: worker["jobs_done"] for worker in stack.live_workers()}
    first, second = stack.submit("together-1"), stack.submit("together-2")
    jobs = [stack.wait_terminal(first), stack.wait_terminal(second)]
    assert [job["status"] for job in jobs] == ["succeeded", "succeeded"], [job["error"] for job in jobs]
    assert [job["attempts"] for job in jobs] == [1, 1]

    # A: the job whose export ended first; B: the other one.
    a, b = sorted(jobs, key=lambda job: export_window(job)[1])
    for job in (a, b):
        stages = job["stage_started_at"]
        assert list(stages) == ["preprocess", "stage1", "stage2", "export", "upload"]
        assert job["started_at"] <= stages["preprocess"] <= stages["stage1"] <= stages["export"] <= job["finished_at"]
    a_export_start, a_export_end = export_window(a)
    assert a_export_end - a_export_start >= EXPORT_STEPS * EXPORT_STEP_S  # the stand-in export ran whole
    overlap = a_export_end - b["stage_started_at"]["stage1"]
    print(f"B's stage 1 started {overlap:.1f} s before A's export ended; "
          f"makespan {max(j['finished_at'] for j in jobs) - min(j['started_at'] for j in jobs):.1f} s, "
          f"one job alone {a['finished_at'] - a['started_at']:.1f} s")
    assert b["stage_started_at"]["stage1"] < a_export_end

    # The workers took turns at the GPU (gpu_turns, on with two workers per GPU): B's stages began
    # only when A's export began (the stamps come from two processes: a little slack), and B's
    # record says how long it waited for its turn.
    assert b["stage_started_at"]["stage1"] >= a_export_start - TURN_SLACK_S
    assert b["timings"]["gpu_wait"] >= a_export_start - a["stage_started_at"]["stage1"] - TURN_SLACK_S
    assert a["timings"]["gpu_wait"] < TURN_SLACK_S

    # Each of the two workers ran one of them.
    assert {w["pid"]: w["jobs_done"] - done_before[w["pid"]] for w in stack.live_workers()} == {
        pid: 1 for pid in done_before}

    # Each export ran on its worker's share of the cores (workers_per_gpu, no export_threads set).
    from pipelines.export.threads import TORCH_THREADS

    share = max(1, TORCH_THREADS // WORKERS_PER_GPU)
    for job in jobs:
        assert results_metadata(job)["timings"]["stage2_steps"]["export_threads"] == share


def test_cancel_during_export_ends_the_job_at_once_and_its_worker_takes_the_next_job(logs_on_failure) -> None:
    stack = logs_on_failure
    busy = stack.submit("busy", stage2_steps=LONG_EXPORT_STEPS)  # keeps the other worker out of the way
    stack.wait_job(busy, lambda job: job["status"] == "running", "the long job to start")
    doomed = stack.submit("doomed")
    stack.wait_in_export(doomed)
    worker = stack.worker_running(doomed)

    asked = time.monotonic()
    answer = stack.http.post(f"/v1/jobs/{doomed}/cancel")
    assert answer.status_code == 202 and answer.json()["status"] == "running", answer.text
    canceled = stack.wait_job(doomed, lambda job: job["status"] in TERMINAL, "the canceled job to end")
    took = time.monotonic() - asked
    print(f"canceled {took:.2f} s after the request, in stage {canceled['stage']}")
    assert canceled["status"] == "canceled" and canceled["stage"] == "export"
    assert took <= CANCEL_WITHIN_S
    assert canceled["outputs"] == {}

    # Each promised event once, in order; `completed` carries the canceled job.
    [done] = stack.completed("doomed")
    assert done["status"] == "canceled" and done["outputs"] == {}
    assert [event for event, _ in stack.events("doomed")] == ["started", "stage1.completed", "completed"]

    # The long job still holds the other worker, so the next job can only run on the freed one.
    following = stack.submit("following")
    stack.wait_job(following, lambda job: job["status"] == "running", "the next job to start", timeout=30)
    assert stack.worker_running(following)["pid"] == worker["pid"]
    assert stack.job(busy)["status"] == "running"

    for job_id in (busy, following):
        stack.http.post(f"/v1/jobs/{job_id}/cancel")
    assert [stack.wait_terminal(job_id)["status"] for job_id in (busy, following)] == ["canceled", "canceled"]


def test_kill_9_during_export_finishes_the_job_once_on_the_other_worker(logs_on_failure) -> None:
    stack = logs_on_failure
    job_id = stack.submit("killed")
    stack.wait_in_export(job_id)
    victim = stack.process(stack.worker_running(job_id)["pid"])
    victim.signal(signal.SIGKILL)
    victim.wait(30)
    killed_at = time.time()

    job = stack.wait_terminal(job_id)
    print(f"kill -9 during the export -> succeeded {job['finished_at'] - killed_at:.1f} s later")
    assert job["status"] == "succeeded", job["error"]
    assert job["attempts"] == 2
    # The record's stage times are the second attempt's, which ran every stage after the kill.
    assert min(job["stage_started_at"].values()) > killed_at
    # The job ran on the one worker left, which is idle again afterwards.
    [survivor] = wait_until(lambda: (live := stack.live_workers()) and live[0]["state"] == "warm" and live, 10,
                            "the surviving worker to be idle")
    assert survivor["pid"] != victim.pid

    # Finished once: one `completed` call (succeeded), one started per attempt.
    [done] = stack.completed("killed")
    assert done["status"] == "succeeded"
    time.sleep(1.0)  # a duplicate would be queued with the first one
    assert [event for event, _ in stack.events("killed")].count("completed") == 1
    assert [event for event, _ in stack.events("killed")].count("started") == 2

    # One set of artifacts: exactly the files the record lists, each stored once, nothing temporary.
    stored = sorted(p.relative_to(stack.workdir / "storage").as_posix()
                    for p in (stack.workdir / "storage" / "jobs" / job_id).rglob("*") if p.is_file())
    assert stored == sorted(f"jobs/{job_id}/{name}" for name in job["outputs"])
    assert {"stage2/output.glb", "results.zip"} <= set(job["outputs"])
    glb = httpx.get(job["outputs"]["stage2/output.glb"]["url"], timeout=30, trust_env=False)
    assert glb.status_code == 200 and glb.content[:4] == b"glTF"
