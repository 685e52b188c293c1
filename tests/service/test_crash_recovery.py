"""kill -9 of a worker mid-job: the job still completes exactly once after a new worker starts."""

from __future__ import annotations

import json
import signal

import httpx
import pytest
import redis

from conftest import FAST_OPTIONS, MESH_PREVIEWS, Stack, service_env, wait_until
from shared.storage.local import LocalStorage

pytestmark = pytest.mark.slow

STAGE1 = (
    ["input.png"] + [f"color_{i}.png" for i in range(5)] + [f"normal_{i}.png" for i in range(5)] + ["latent.npz", "voxel.ply"]
)


def test_killed_worker_job_completes_exactly_once(redis_url, sample_photo, tmp_path):
    storage_dir = tmp_path / "storage"
    logs = tmp_path / "logs"
    logs.mkdir()
    env = service_env(
        redis_url,
        "crash",
        storage={"backend": "local", "local_dir": str(storage_dir), "signing_secret": "crash-secret"},
        # Redelivery 3 s after the worker's death instead of hours (the job itself takes longer
        # than that, but a busy solo worker never restores messages, so it cannot run twice).
        extra={"SYNCHUMAN_WORKER__VISIBILITY_TIMEOUT_S": "3", "SYNCHUMAN_WORKER__UNACKED_RESTORE_INTERVAL_S": "1"},
    )
    stack = Stack(env=env, logs=logs)
    try:
        stack.start_api()
        first = stack.start_worker("first")
        stack.wait_ready()
        created = httpx.post(
            f"{stack.api_url}/v1/jobs",
            files={"image": ("p.png", sample_photo.read_bytes(), "image/png")},
            data={"options": json.dumps(FAST_OPTIONS)},
        ).json()
        job_id = created["id"]

        def running_model():
            job = httpx.get(f"{stack.api_url}/v1/jobs/{job_id}").json()
            return job if job["status"] == "running" and job["stage"] in ("stage1", "stage2") else None

        wait_until(running_model, 120, "the job to be inside a model stage", interval=0.05)
        first.send_signal(signal.SIGKILL)
        first.wait()

        stack.start_worker("second")

        def finished():
            job = httpx.get(f"{stack.api_url}/v1/jobs/{job_id}").json()
            return job if job["status"] in ("succeeded", "failed", "canceled") else None

        job = wait_until(finished, 240, "the redelivered job to finish", interval=0.2)
        assert job["status"] == "succeeded", job["error"]
        assert job["attempts"] == 2

        client = redis.Redis.from_url(redis_url)
        record = json.loads(client.get(f"crash:job:{job_id}"))
        assert [(e["status"], e["attempt"]) for e in record["history"]] == [
            ("running", 1),
            ("running", 2),
            ("succeeded", 2),
        ]
        # One complete set of artifacts, no temporary files left behind.
        storage = LocalStorage(storage_dir, signing_secret="crash-secret", public_base_url=stack.api_url)
        expected = {"input.png", "results.zip", "stage2/output.glb", "stage2/output_mesh.ply"} | MESH_PREVIEWS
        expected |= {f"stage1/{n}" for n in STAGE1}
        assert storage.list_keys(f"jobs/{job_id}") == sorted(f"jobs/{job_id}/{n}" for n in expected)
        assert not [p for p in storage_dir.rglob(".tmp-*")]
        glb = httpx.get(job["outputs"]["stage2/output.glb"]["url"])
        assert glb.status_code == 200 and glb.content[:4] == b"glTF"
        # The broker holds nothing more for this job: no second run is pending.
        assert client.llen("crash:celery:gpu") == 0
        client.close()
    finally:
        stack.stop()
