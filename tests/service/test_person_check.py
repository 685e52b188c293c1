"""The person cut-out before stage 1, through the real stack (uvicorn, Redis, Celery worker, SeaweedFS).

An opaque photo of a person succeeds; a cut-out of a cube and a texture fail
with ``no_person`` within two seconds of worker time, and nothing of them
reaches stage 1.
"""

from __future__ import annotations

import io
import json

import httpx
import numpy as np
import pytest
from PIL import Image

from bench.person_photos import BACKGROUNDS, composite, with_margin
from shared.storage.s3 import S3Storage
from tests.support.service_stack import poll_until_finished
from tests.support.not_people import cube_cutout, texture
from tests.support.requirements import require_pose_model
from tests.support.service_stack import FAST_OPTIONS

pytestmark = pytest.mark.slow

MAX_WORKER_SECONDS = 2.0


def encode(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return buffer.getvalue()


def submit(api_url: str, name: str, data: bytes, content_type: str) -> str:
    response = httpx.post(
        f"{api_url}/v1/jobs",
        files={"image": (name, data, content_type)},
        data={"options": json.dumps(FAST_OPTIONS)},
        timeout=30,
    )
    assert response.status_code == 202, response.text
    return response.json()["id"]


def stored_keys(s3_server, job_id: str) -> list[str]:
    storage = S3Storage(
        endpoint=s3_server.endpoint, public_endpoint=None, bucket="e2e-artifacts", region="us-east-1",
        access_key=s3_server.ACCESS_KEY, secret_key=s3_server.SECRET_KEY,
    )
    return storage.list_keys(f"jobs/{job_id}")


def test_opaque_jpeg_of_a_person_succeeds(s3_stack, sample_photos):
    require_pose_model()
    person = with_margin(Image.open(sample_photos[-1]).convert("RGBA"))
    photo = composite(person, BACKGROUNDS["photo"](*person.size), "photo").photo
    job_id = submit(s3_stack.api_url, "person.jpg", encode(photo, "JPEG"), "image/jpeg")
    job, _ = poll_until_finished(s3_stack.api_url, job_id)
    assert job["status"] == "succeeded", job["error"]
    assert job["timings"]["preprocess"] > 0
    stage1_input = httpx.get(job["outputs"]["stage1/input.png"]["url"], timeout=30)
    alpha = np.asarray(Image.open(io.BytesIO(stage1_input.content)).getchannel("A"))
    assert 0.1 < (alpha > 127).mean() < 0.9  # the person, cut out of the photo's background


@pytest.mark.parametrize("kind", ["cube-cutout", "texture"])
def test_non_people_fail_with_no_person_before_stage_1(s3_stack, s3_server, kind):
    require_pose_model()
    if kind == "cube-cutout":
        job_id = submit(s3_stack.api_url, "cube.png", encode(cube_cutout(), "PNG"), "image/png")
    else:
        job_id = submit(s3_stack.api_url, "bricks.jpg", encode(texture(), "JPEG"), "image/jpeg")
    job, seen = poll_until_finished(s3_stack.api_url, job_id)
    assert job["status"] == "failed"
    assert job["error"]["code"] == "no_person" and job["error"]["retryable"] is False
    assert "person" in job["error"]["message"]
    assert job["finished_at"] - job["started_at"] < MAX_WORKER_SECONDS
    # Nothing reached stage 1: the job stopped in preprocessing, no artifact but the upload.
    assert job["stage"] == "preprocess"
    assert all(j["stage"] in (None, "preprocess") for j in seen)
    assert job["outputs"] == {}
    [only] = stored_keys(s3_server, job_id)
    assert only.startswith(f"jobs/{job_id}/input")


def test_onnx_segmenter_setting_cuts_out_through_the_worker(redis_url, s3_server, sample_photos, tmp_path):
    """A worker configured for a rembg-compatible model file (built here) cuts opaque photos out with it."""
    require_pose_model()
    pytest.importorskip("onnxruntime")
    from tests.support.service_stack import Stack, s3_storage_env, service_env
    from tests.support.tiny_onnx import GREEN_SCREEN, build_rembg_model

    weights = tmp_path / "weights"
    weights.mkdir()
    build_rembg_model(weights / "u2net.onnx")
    env = service_env(
        redis_url,
        "onnx-seg",
        storage=s3_storage_env(s3_server, "onnx-seg"),
        extra={"SYNCHUMAN_WORKER__SEGMENTER": "onnx", "SYNCHUMAN_WORKER__WEIGHTS_DIR": str(weights)},
    )
    (tmp_path / "logs").mkdir()
    stack = Stack(env=env, logs=tmp_path / "logs")
    try:
        stack.start_api()
        stack.start_worker()
        stack.wait_ready()
        person = with_margin(Image.open(sample_photos[0]).convert("RGBA"))
        green = np.empty((person.height, person.width, 3), dtype=np.uint8)
        green[:] = GREEN_SCREEN
        photo = composite(person, green, "green").photo
        job_id = submit(stack.api_url, "green.jpg", encode(photo, "JPEG"), "image/jpeg")
        job, _ = poll_until_finished(stack.api_url, job_id)
        assert job["status"] == "succeeded", job["error"]
        stage1_input = httpx.get(job["outputs"]["stage1/input.png"]["url"], timeout=30)
        rgba = np.asarray(Image.open(io.BytesIO(stage1_input.content)))
        kept = rgba[..., 3] > 127
        assert 0.1 < kept.mean() < 0.9
        assert (rgba[kept][:, 1] > 180).mean() < 0.02  # hardly any green screen left in the cut-out
    finally:
        stack.stop()


def test_worker_with_a_missing_segmentation_model_does_not_start(redis_url, tmp_path):
    from tests.support.service_stack import Stack, service_env
    from worker.celery_app import EXIT_PIPELINES_FAILED

    env = service_env(
        redis_url,
        "no-seg-model",
        storage={"backend": "local", "local_dir": str(tmp_path / "storage"), "signing_secret": "s"},
        extra={"SYNCHUMAN_WORKER__SEGMENTER": "onnx", "SYNCHUMAN_WORKER__SEGMENTER_MODEL": str(tmp_path / "u2net.onnx")},
    )
    (tmp_path / "logs").mkdir()
    stack = Stack(env=env, logs=tmp_path / "logs")
    try:
        worker = stack.start_worker("no-model")
        assert worker.wait(timeout=120) == EXIT_PIPELINES_FAILED
        assert "u2net.onnx does not exist" in (tmp_path / "logs" / "worker-no-model.log").read_text()
    finally:
        stack.stop()
