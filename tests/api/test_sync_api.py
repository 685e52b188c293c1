"""The synchronous API existing users call: /generate (JSON and zip), /health, /info, /."""

from __future__ import annotations

import io
import json
import statistics
import threading
import time
import zipfile

import httpx
import pytest
import redis

from tests.support.lifecycle_stack import JOB_TIMEOUT_S, PREFIX

pytestmark = pytest.mark.slow  # starts servers and workers as real processes

PARAMETERS = {"seed": "11", "stage1_steps": "3", "stage2_steps": "2", "guidance_scale": "2.5",
              "cfg_strength": "4.0", "texture_size": "512", "simplify": "0.95"}


def generate(webhook_stack, photo, **fields: str) -> httpx.Response:
    with webhook_stack.client(timeout=JOB_TIMEOUT_S + 30) as http:
        return http.post("/generate", data=fields, files={"image": (photo.name, photo.read_bytes(), "image/png")})


def test_generate_answers_json_with_output_dirs_and_applies_every_parameter(webhook_stack, sample_photo) -> None:
    latencies: list[float] = []
    result: dict = {}

    def call() -> None:
        result["response"] = generate(webhook_stack, sample_photo, **PARAMETERS)

    waiting = threading.Thread(target=call)
    waiting.start()
    with webhook_stack.client() as http:
        # /health stays responsive while /generate waits and the worker runs the job.
        while waiting.is_alive():
            started = time.perf_counter()
            health = http.get("/health")
            latencies.append(time.perf_counter() - started)
            assert health.status_code == 200
            time.sleep(0.1)
    waiting.join()
    assert len(latencies) >= 10, "the job finished too fast to measure /health during it"
    assert statistics.median(latencies) < 0.1, latencies
    assert max(latencies) < 1.0, latencies

    response = result["response"]
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "success"
    # The keys the documented client reads, usable as URL bases.
    glb = httpx.get(f"{body['stage2']['output_dir']}/output.glb", follow_redirects=True, trust_env=False)
    assert glb.status_code == 200 and glb.content[:4] == b"glTF"
    view = httpx.get(f"{body['stage1']['output_dir']}/color_0.png", follow_redirects=True, trust_env=False)
    assert view.content[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(body["stage2"]["files"]) == [
        "output.glb", "output_mesh.ply", "thumbnail.png", "turntable.mp4", "turntable.webp"
    ]
    assert {f"color_{i}.png" for i in range(5)} <= set(body["stage1"]["files"])
    # Every parameter reached the job (and so the pipelines).
    with webhook_stack.client() as http:
        job = http.get(f"/v1/jobs/{body['job_id']}").json()
    for name, value in PARAMETERS.items():
        assert job["options"][name] == json.loads(value), name


def test_generate_download_answers_the_documented_zip(webhook_stack, sample_photo) -> None:
    response = generate(webhook_stack, sample_photo, download="true", texture_size="512", simplify="0.95")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/zip"
    archive = zipfile.ZipFile(io.BytesIO(response.content))
    names = set(archive.namelist())
    assert {"stage2/output.glb", "stage2/output_mesh.ply", "results_metadata.json", "stage1/input.png",
            "stage1/latent.npz"} <= names
    assert {f"stage1/{kind}_{i}.png" for kind in ("color", "normal") for i in range(5)} <= names
    metadata = json.loads(archive.read("results_metadata.json"))
    assert metadata["parameters"]["texture_size"] == 512


def test_generate_stage1_only_stops_before_the_mesh(webhook_stack, sample_photo) -> None:
    response = generate(webhook_stack, sample_photo, stage1_only="true", download="true")
    assert response.status_code == 200, response.text
    names = set(zipfile.ZipFile(io.BytesIO(response.content)).namelist())
    assert "stage1/color_4.png" in names and "results_metadata.json" in names
    assert not any(name.startswith("stage2/") for name in names)


def test_generate_timeout_answers_504_with_the_job_id_and_the_job_goes_on(webhook_stack, sample_photo) -> None:
    response = generate(webhook_stack, sample_photo, timeout_s="0.3", texture_size="512", simplify="0.95")
    assert response.status_code == 504
    body = response.json()
    assert body["error"]["code"] == "timeout" and body["error"]["retryable"] is True
    job_id = body["job_id"]
    assert response.headers["location"] == f"/v1/jobs/{job_id}"
    with webhook_stack.client() as http:
        job = http.get(f"/v1/jobs/{job_id}").json()
        assert job["status"] in ("queued", "running") and not job["error"]  # not canceled: it goes on
        assert http.post(f"/v1/jobs/{job_id}/cancel").status_code in (200, 202)  # free the worker


def test_client_disconnect_does_not_cancel_the_job(webhook_stack, sample_photo) -> None:
    before = _job_ids(webhook_stack)
    impatient = httpx.Client(base_url=webhook_stack.api_url, timeout=1.0, trust_env=False)
    try:
        impatient.post("/generate", data={"texture_size": "512", "simplify": "0.95"},
                       files={"image": (sample_photo.name, sample_photo.read_bytes(), "image/png")})
        raise AssertionError("/generate answered within 1 s; the job was too fast to test a disconnect")
    except httpx.ReadTimeout:
        pass  # the client gave up and closed its connection
    finally:
        impatient.close()
    [job_id] = _job_ids(webhook_stack) - before
    assert webhook_stack.wait_job(job_id)["status"] == "succeeded"


def _job_ids(webhook_stack) -> set[str]:
    """Ids of every job in the stack's Redis (the API does not list jobs)."""
    client = redis.Redis.from_url(webhook_stack.redis_url)
    try:
        return {key.decode().split(":")[2] for key in client.scan_iter(f"{PREFIX}:job:*") if key.count(b":") == 2}
    finally:
        client.close()


def test_generate_errors_are_json_with_stable_codes(webhook_stack) -> None:
    with webhook_stack.client() as http:
        missing = http.post("/generate", data={"seed": "1"})
        assert missing.status_code == 400 and missing.json()["error"]["code"] == "missing_image"
        garbage = http.post("/generate", files={"image": ("x.png", b"\x89PNG\r\n\x1a\nnot really", "image/png")})
        assert garbage.status_code == 422 and garbage.json()["error"]["code"] == "invalid_image"
        bad = http.post("/generate", data={"texture_size": "999", "image_url": "http://example.invalid/x.png"})
        assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_options"
        for answer in (missing, garbage, bad):
            assert "Traceback" not in answer.text and "/work/" not in answer.text


def test_health_info_and_summary(webhook_stack) -> None:
    with webhook_stack.client() as http:
        health = http.get("/health").json()
        assert health["status"] == "ok" and health["stage1"] is True and health["stage2"] is True
        assert {"status", "service", "stage1", "stage2"} <= set(health)
        info = http.get("/info").json()
        [pipeline] = info["pipelines"]
        assert pipeline["name"] == "preview" and pipeline["warm_workers"] == 1
        assert info["parameters"]["stage1_steps"]["default"] == 50
        assert info["parameters"]["texture_size"]["allowed"] == [512, 1024, 2048]
        assert [w["pipeline"] for w in info["workers"]] == ["preview"]  # the webhook worker loads nothing
        assert info["webhooks"]["events"] == ["started", "stage1.completed", "completed"]
        summary = http.get("/").json()
        assert summary["docs"] == "/docs" and "POST /generate" in summary["endpoints"]
        assert summary["ui"] == "/ui" and "GET /ui" in summary["endpoints"]
        assert "text/html" in http.get(summary["ui"]).headers["content-type"]
        assert http.get("/docs").status_code == 200
