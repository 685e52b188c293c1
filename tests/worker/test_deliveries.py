"""``deliver_to``: a preview job's artifacts uploaded to the caller's presigned PUT URLs (SeaweedFS on loopback)."""

from __future__ import annotations

import json
import socket

import boto3
import httpx
import pytest
from botocore.config import Config

from client.stack import wait_until
from tests.support.service_stack import FAST_OPTIONS, poll_until_finished

pytestmark = pytest.mark.slow

CALLER_BUCKET = "caller-results"


@pytest.fixture(scope="module")
def caller_s3(s3_server):
    """The caller's own bucket, reached as ``localhost`` (the stack's allowlisted host for fetched URLs)."""
    endpoint = s3_server.endpoint.replace("127.0.0.1", "localhost")
    client = boto3.client(
        "s3", endpoint_url=endpoint, aws_access_key_id=s3_server.ACCESS_KEY, aws_secret_access_key=s3_server.SECRET_KEY,
        region_name="us-east-1", config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
    )
    client.create_bucket(Bucket=CALLER_BUCKET)
    return client


def presigned_put(client, key: str) -> str:
    return client.generate_presigned_url("put_object", Params={"Bucket": CALLER_BUCKET, "Key": key}, ExpiresIn=3600)


def submit(api_url: str, photo, deliver_to: dict, **options) -> httpx.Response:
    return httpx.post(
        f"{api_url}/v1/jobs",
        files={"image": (photo.name, photo.read_bytes(), "image/png")},
        data={"options": json.dumps({**FAST_OPTIONS, **options}), "deliver_to": json.dumps(deliver_to)},
    )


@pytest.fixture(scope="module")
def closed_port():
    """A loopback port held (bound, never listening) for the module: connections to it are refused."""
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        yield held.getsockname()[1]


@pytest.fixture(scope="module")
def delivered(s3_stack, sample_photo, caller_s3, closed_port):
    forged = presigned_put(caller_s3, "forged.glb").replace("X-Amz-Signature=", "X-Amz-Signature=00")
    nobody = f"http://localhost:{closed_port}/upload"  # refused: retried with backoff
    deliver_to = {
        "stage2/output.glb": presigned_put(caller_s3, "job/model.glb"),
        "stage2/output.usdz": presigned_put(caller_s3, "job/model.usdz"),
        "stage2/thumbnail.png": presigned_put(caller_s3, "job/thumbnail.png"),
        "results.zip": forged,
        "stage2/turntable.mp4": nobody,
    }
    response = submit(s3_stack.api_url, sample_photo, deliver_to, formats=["usdz"])
    assert response.status_code == 202, response.text
    job, _ = poll_until_finished(s3_stack.api_url, response.json()["id"])
    assert job["status"] == "succeeded", job["error"]

    def settled():
        current = httpx.get(f"{s3_stack.api_url}/v1/jobs/{job['id']}").json()
        deliveries = current["deliveries"]
        done = all(d["state"] != "pending" for n, d in deliveries.items() if n != "stage2/turntable.mp4")
        return current if done and deliveries["stage2/turntable.mp4"]["attempts"] >= 2 else None

    return wait_until(settled, 90, "the deliveries to settle", interval=0.5)


def test_artifacts_arrive_in_the_callers_bucket(delivered, caller_s3):
    deliveries = delivered["deliveries"]
    for name, key in [("stage2/output.glb", "job/model.glb"), ("stage2/output.usdz", "job/model.usdz"),
                      ("stage2/thumbnail.png", "job/thumbnail.png")]:
        assert deliveries[name]["state"] == "delivered", deliveries[name]
        assert deliveries[name]["status_code"] == 200 and deliveries[name]["attempts"] == 1
        uploaded = caller_s3.get_object(Bucket=CALLER_BUCKET, Key=key)["Body"].read()
        assert uploaded == httpx.get(delivered["outputs"][name]["url"]).content
        assert deliveries[name]["bytes"] == len(uploaded)


def test_a_refused_upload_fails_without_retries_and_the_job_still_succeeds(delivered):
    refused = delivered["deliveries"]["results.zip"]
    assert delivered["status"] == "succeeded"
    assert refused["state"] == "failed" and refused["status_code"] == 403 and refused["attempts"] == 1
    assert refused["error"] == "HTTP 403"


def test_an_unreachable_url_is_retried_with_backoff(delivered):
    retried = delivered["deliveries"]["stage2/turntable.mp4"]
    assert retried["attempts"] >= 2 and retried["status_code"] is None, retried
    assert retried["error"] == "ConnectError", retried
    if retried["state"] == "pending":
        assert retried["next_attempt_at"] > delivered["finished_at"]


def test_the_job_never_shows_the_callers_urls(delivered):
    assert CALLER_BUCKET not in json.dumps(delivered)
    assert "deliver_to" not in delivered


@pytest.mark.parametrize(
    ("deliver_to", "options", "code"),
    [
        ({"stage2/output.glb": "http://169.254.169.254/latest"}, {}, "url_refused"),
        ({"stage2/output.glb": "ftp://example.com/x"}, {}, "url_refused"),
        ({"stage1/latent.npz": "https://example.com/x"}, {}, "invalid_deliver_to"),
        ({"stage2/output.usdz": "https://example.com/x"}, {}, "invalid_deliver_to"),
        (["https://example.com/x"], {}, "invalid_deliver_to"),
    ],
)
def test_bad_deliver_to_is_refused_before_anything_is_stored(s3_stack, sample_photo, deliver_to, options, code):
    response = submit(s3_stack.api_url, sample_photo, deliver_to, **options)
    assert response.status_code == 422
    assert response.json()["error"]["code"] == code


def test_a_job_that_does_not_succeed_delivers_nothing_and_says_so(s3_stack, sample_photo, caller_s3):
    response = submit(s3_stack.api_url, sample_photo, {"stage2/output.glb": presigned_put(caller_s3, "never.glb")})
    job_id = response.json()["id"]
    assert httpx.post(f"{s3_stack.api_url}/v1/jobs/{job_id}/cancel").status_code in (200, 202)
    job, _ = poll_until_finished(s3_stack.api_url, job_id)
    assert job["status"] == "canceled"
    assert job["deliveries"]["stage2/output.glb"]["state"] == "skipped"
    assert job["deliveries"]["stage2/output.glb"]["attempts"] == 0
    listed = caller_s3.list_objects_v2(Bucket=CALLER_BUCKET).get("Contents", [])
    assert "never.glb" not in [o["Key"] for o in listed]
