"""A worker whose pipelines cannot load must never take a job off the queue."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from client.stack import wait_until
from tests.support.service_stack import FAST_OPTIONS, Stack, service_env
from worker.celery_app import EXIT_PIPELINES_FAILED

pytestmark = pytest.mark.slow


def test_worker_with_unloadable_pipelines_exits_and_leaves_the_job_queued(redis_url, sample_photo, tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    env = service_env(
        redis_url,
        "badweights",
        storage={"backend": "local", "local_dir": str(tmp_path / "storage"), "signing_secret": "s"},
        extra={
            "SYNCHUMAN_WORKER__PIPELINE": "synchuman",
            "SYNCHUMAN_WORKER__WEIGHTS_DIR": str(tmp_path / "no-such-weights"),
        },
    )
    stack = Stack(env=env, logs=logs)
    try:
        stack.start_api()
        created = httpx.post(
            f"{stack.api_url}/v1/jobs",
            files={"image": ("p.png", sample_photo.read_bytes(), "image/png")},
            data={"options": json.dumps(FAST_OPTIONS)},
        )
        assert created.status_code == 202
        job_id = created.json()["id"]

        worker = stack.start_worker("broken")
        assert worker.wait(120) == EXIT_PIPELINES_FAILED
        log_text = (logs / "worker-broken.log").read_text()
        assert "pipelines failed to load" in log_text

        job = httpx.get(f"{stack.api_url}/v1/jobs/{job_id}").json()
        assert job["status"] == "queued", job

        # A healthy worker then takes the job that the broken one left alone.
        stack.env["SYNCHUMAN_WORKER__PIPELINE"] = "preview"
        stack.start_worker("healthy")

        def finished():
            current = httpx.get(f"{stack.api_url}/v1/jobs/{job_id}").json()
            return current if current["status"] in ("succeeded", "failed", "canceled") else None

        assert wait_until(finished, 240, "the job to finish on the healthy worker", interval=0.3)["status"] == "succeeded"
    finally:
        stack.stop()


def test_a_loading_worker_stays_listed_past_its_heartbeat_ttl(redis_url, tmp_path):
    """Loading (minutes on a GPU's first start) keeps the heartbeat alive, marked not warm."""
    from tests.support.fault_pipelines import SLOW_LOAD_S

    logs = tmp_path / "logs"
    logs.mkdir()
    env = service_env(
        redis_url, "slowload",
        storage={"backend": "local", "local_dir": str(tmp_path / "storage"), "signing_secret": "s"},
        extra={"SYNCHUMAN_WORKER__PIPELINE_FACTORY": "tests.support.fault_pipelines:load_slowly"},
    )
    stack = Stack(env=env, logs=logs)
    try:
        stack.start_api()
        stack.start_worker("slow")
        ttl = float(env["SYNCHUMAN_WORKER__HEARTBEAT_TTL_S"])
        assert SLOW_LOAD_S > ttl + 2

        def loading_workers():
            body = httpx.get(f"{stack.api_url}/readyz", timeout=5).json()
            return [w for w in body["workers"] if w["state"] == "loading"] if not body["ready"] else None

        wait_until(loading_workers, 30, "the worker to be listed as loading", interval=0.2)
        listed_at = time.monotonic()
        # Past the TTL, the loading worker is still listed (its heartbeat is renewed while it loads).
        while time.monotonic() - listed_at < ttl + 1:
            assert loading_workers(), "the loading worker's heartbeat expired"
            time.sleep(0.5)
        stack.wait_ready(timeout=60)
    finally:
        stack.stop()
