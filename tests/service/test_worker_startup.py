"""A worker whose pipelines cannot load must never take a job off the queue."""

from __future__ import annotations

import json

import httpx
import pytest

from conftest import FAST_OPTIONS, Stack, service_env, wait_until
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
        assert worker.wait(timeout=120) == EXIT_PIPELINES_FAILED
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
