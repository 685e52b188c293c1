"""A photo through the real stack: uvicorn -> Redis -> Celery worker (preview pipeline) -> SeaweedFS."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time
import zipfile

import httpx
import pytest
import trimesh

from client.sdk import SyncHumanClient
from client.stack import wait_until
from tests.support.service_stack import FAST_OPTIONS, MESH_PREVIEWS, WEBHOOK_SECRET, poll_until_finished
from shared.storage.s3 import S3Storage

pytestmark = pytest.mark.slow

STAGE1 = (
    ["input.png"] + [f"color_{i}.png" for i in range(5)] + [f"normal_{i}.png" for i in range(5)] + ["latent.npz", "voxel.ply"]
)
EXPECTED_OUTPUTS = (
    {"input.png", "results.zip", "stage2/output.glb", "stage2/output_mesh.ply"} | MESH_PREVIEWS | {f"stage1/{n}" for n in STAGE1}
)


def test_readyz_lists_the_warm_preview_worker(s3_stack):
    body = httpx.get(f"{s3_stack.api_url}/readyz").json()
    assert body["ready"] is True
    assert body["checks"]["storage"] == {"ok": True, "detail": "s3"}
    [worker] = body["workers"]
    assert worker["pipeline"] == "preview"
    assert worker["pipeline_version"]
    assert worker["device"] == "cpu"
    assert worker["state"] in ("warm", "busy")
    assert "cuda_visible_devices" in worker and worker["hostname"]


@pytest.fixture(scope="module")
def finished_job(s3_stack, web_server, sample_photo) -> tuple[dict, list[dict]]:
    """One photo submitted (with a webhook) and polled until it finished."""
    response = httpx.post(
        f"{s3_stack.api_url}/v1/jobs",
        files={"image": (sample_photo.name, sample_photo.read_bytes(), "image/png")},
        data={"options": json.dumps({**FAST_OPTIONS, "seed": 7}), "webhook_url": web_server.url("/hook")},
    )
    assert response.status_code == 202, response.text
    created = response.json()
    assert response.headers["location"] == f"/v1/jobs/{created['id']}"
    assert created["status"] == "queued" and created["queue_position"] >= 1
    assert created["links"]["result"] == f"/v1/jobs/{created['id']}/result"
    return poll_until_finished(s3_stack.api_url, created["id"])


def test_job_reports_progress_stages_and_timings(finished_job):
    job, seen = finished_job
    assert job["status"] == "succeeded", job["error"]
    progress = [j["progress"] for j in seen]
    assert progress == sorted(progress), "progress never goes backwards"
    assert job["progress"] == 100
    assert {j["stage"] for j in seen if j["status"] == "running"} <= {"preprocess", "stage1", "stage2", "export", "upload"}
    assert set(job["timings"]) >= {"preprocess", "stage1", "stage2", "export", "upload", "total"}
    assert job["pipeline"]["name"] == "preview" and job["attempts"] == 1
    assert job["options"]["seed"] == 7 and job["options"]["texture_size"] == 512
    assert job["eta_s"] is None and job["queue_position"] is None


def test_glb_downloads_through_its_url_and_is_textured(s3_stack, finished_job):
    job, _ = finished_job
    assert set(job["outputs"]) == EXPECTED_OUTPUTS
    assert all(o["expires_at"] > job["finished_at"] for o in job["outputs"].values())
    glb = httpx.get(job["outputs"]["stage2/output.glb"]["url"]).content
    scene = trimesh.load(io.BytesIO(glb), file_type="glb")
    [mesh] = list(scene.geometry.values())
    assert len(mesh.faces) > 100
    texture = mesh.visual.material.baseColorTexture
    assert texture is not None and texture.size[0] >= 256

    result = httpx.get(f"{s3_stack.api_url}/v1/jobs/{job['id']}/result")
    assert result.status_code == 302
    assert httpx.get(result.headers["location"]).content == glb


def test_results_zip_holds_the_documented_layout(finished_job):
    job, _ = finished_job
    archive = zipfile.ZipFile(io.BytesIO(httpx.get(job["outputs"]["results.zip"]["url"]).content))
    expected = {f"stage1/{n}" for n in STAGE1} | {"stage2/output.glb", "stage2/output_mesh.ply", "results_metadata.json"}
    expected |= MESH_PREVIEWS
    assert set(archive.namelist()) == expected
    metadata = json.loads(archive.read("results_metadata.json"))
    assert metadata["pipeline"]["name"] == "preview"
    assert "not SyncHuman" in metadata["pipeline"]["description"]
    assert metadata["parameters"] == job["options"]
    assert set(metadata["timings"]) >= {"stage1", "stage2"}
    glb = httpx.get(job["outputs"]["stage2/output.glb"]["url"]).content
    assert archive.read("stage2/output.glb") == glb


def test_storage_holds_exactly_one_set_of_artifacts(s3_server, finished_job):
    job, _ = finished_job
    storage = S3Storage(
        endpoint=s3_server.endpoint, public_endpoint=None, bucket="e2e-artifacts", region="us-east-1",
        access_key=s3_server.ACCESS_KEY, secret_key=s3_server.SECRET_KEY,
    )
    assert storage.list_keys(f"jobs/{job['id']}/") == sorted(f"jobs/{job['id']}/{n}" for n in EXPECTED_OUTPUTS)


def test_each_read_mints_fresh_urls(s3_stack, finished_job):
    job, _ = finished_job
    time.sleep(1.1)
    again = httpx.get(f"{s3_stack.api_url}/v1/jobs/{job['id']}").json()
    before, after = job["outputs"]["results.zip"], again["outputs"]["results.zip"]
    assert after["expires_at"] > before["expires_at"] and after["url"] != before["url"]


def test_finished_job_calls_its_webhook_signed(finished_job, web_server):
    job, _ = finished_job
    [(headers, body)] = wait_until(lambda: web_server.hooks, 30, "the webhook call")
    payload = SyncHumanClient.verify_webhook(headers, body, WEBHOOK_SECRET)
    assert payload["id"] == job["id"] and payload["status"] == "succeeded"
    assert headers["webhook-id"]
    with pytest.raises(ValueError):
        SyncHumanClient.verify_webhook(headers, body.replace(b"succeeded", b"failed"), WEBHOOK_SECRET)


def test_cli_reads_status_and_downloads(s3_stack, finished_job, tmp_path):
    job, _ = finished_job
    cli = [sys.executable, "-m", "client.cli"]
    status = subprocess.run([*cli, "status", job["id"], "--url", s3_stack.api_url], capture_output=True, text=True, check=True)
    assert json.loads(status.stdout)["status"] == "succeeded"
    subprocess.run([*cli, "download", job["id"], "-o", str(tmp_path), "--url", s3_stack.api_url], check=True, capture_output=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["output.glb", "output_mesh.ply", "results.zip", "thumbnail.png"]
    glb = httpx.get(job["outputs"]["stage2/output.glb"]["url"]).content
    assert (tmp_path / "output.glb").read_bytes() == glb


def test_result_of_a_queued_job_is_409(s3_stack, sample_photo):
    api = s3_stack.api_url
    created = httpx.post(
        f"{api}/v1/jobs",
        files={"image": ("p.png", sample_photo.read_bytes(), "image/png")},
        data={"options": json.dumps(FAST_OPTIONS)},
    ).json()
    response = httpx.get(f"{api}/v1/jobs/{created['id']}/result")
    canceled = httpx.post(f"{api}/v1/jobs/{created['id']}/cancel")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "job_not_ready"
    assert canceled.status_code == 202
    job, _ = poll_until_finished(api, created["id"])
    assert job["status"] == "canceled"
    assert job["outputs"] == {}
