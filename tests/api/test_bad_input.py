"""Bad requests get a 4xx, a stable code and a clear message; nothing is stored, no job is created."""

from __future__ import annotations

import io
import json
import socket

import httpx
import pytest
import redis
from PIL import Image

from tests.support.service_stack import MAX_PIXELS, MAX_UPLOAD_BYTES
from shared.storage.s3 import S3Storage

pytestmark = pytest.mark.slow  # starts servers and workers as real processes


def png_bytes(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture
def nothing_created(s3_stack, s3_server, redis_url):
    """Asserts after the test that no job record, queue entry or stored object appeared."""
    client = redis.Redis.from_url(redis_url)
    storage = S3Storage(
        endpoint=s3_server.endpoint, public_endpoint=None, bucket="e2e-artifacts", region="us-east-1",
        access_key=s3_server.ACCESS_KEY, secret_key=s3_server.SECRET_KEY,
    )

    def snapshot():
        return (
            sorted(client.scan_iter(match=f"{s3_stack.prefix}:job:*")),
            client.zcard(f"{s3_stack.prefix}:queue"),
            storage.list_keys("jobs/"),
        )

    before = snapshot()
    yield
    assert snapshot() == before
    client.close()


def submit(api_url: str, content: bytes | None = None, **data: str) -> httpx.Response:
    files = {"image": ("upload.bin", content, "application/octet-stream")} if content is not None else None
    return httpx.post(f"{api_url}/v1/jobs", files=files, data=data, timeout=30)


def assert_error(response: httpx.Response, status: int, code: str, *words: str) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert error["retryable"] is False
    for word in words:
        assert word in error["message"]


def test_create_job_rejects_non_image(s3_stack, nothing_created):
    assert_error(submit(s3_stack.api_url, b"this is plain text, not a picture"), 422, "invalid_image", "not an image")


def test_create_job_rejects_truncated_png(s3_stack, sample_photo, nothing_created):
    data = sample_photo.read_bytes()
    assert_error(submit(s3_stack.api_url, data[: len(data) // 2]), 422, "invalid_image", "truncated")


def test_create_job_rejects_zero_bytes(s3_stack, nothing_created):
    assert_error(submit(s3_stack.api_url, b""), 422, "empty_upload", "0 bytes")


def test_create_job_rejects_upload_over_byte_cap(s3_stack, nothing_created):
    too_big = b"\x89PNG\r\n\x1a\n" + b"\0" * MAX_UPLOAD_BYTES
    assert_error(submit(s3_stack.api_url, too_big), 413, "payload_too_large", str(MAX_UPLOAD_BYTES))


def test_create_job_rejects_decompression_bomb(s3_stack, nothing_created):
    side = int(MAX_PIXELS**0.5) + 100
    bomb = png_bytes(Image.new("L", (side, side)))
    assert len(bomb) < 100_000, "a few KB that decode to millions of pixels"
    assert_error(submit(s3_stack.api_url, bomb), 422, "image_too_large", f"{side}x{side}")


def test_create_job_rejects_unsupported_format(s3_stack, nothing_created):
    buf = io.BytesIO()
    Image.new("RGB", (128, 128), "red").save(buf, format="GIF")
    assert_error(submit(s3_stack.api_url, buf.getvalue()), 415, "unsupported_format", "GIF")


def test_create_job_rejects_fully_transparent_image(s3_stack, nothing_created):
    empty = png_bytes(Image.new("RGBA", (256, 256), (255, 0, 0, 0)))
    assert_error(submit(s3_stack.api_url, empty), 422, "no_foreground", "transparent")


def test_create_job_needs_exactly_one_image_source(s3_stack, sample_photo, nothing_created):
    assert_error(submit(s3_stack.api_url), 400, "missing_image")
    both = submit(s3_stack.api_url, sample_photo.read_bytes(), image_url="https://example.com/a.png")
    assert_error(both, 400, "missing_image")


@pytest.mark.parametrize(
    ("request_kwargs", "status", "code", "words"),
    [
        # Form bodies (answered by the lean form route)...
        ({"data": {"image": "not-a-file"}, "files": {"other": ("a.txt", b"x")}}, 422, "invalid_request", ["body.image"]),
        ({"files": {"image": ("a.png", b"\x89PNG", "image/png"), "options": ("o.json", b"{}")}}, 422,
         "invalid_request", ["body.options"]),
        ({"files": {"image": ("", b"", "application/octet-stream")}}, 400, "missing_image", []),  # no file chosen
        ({"files": {"image": ("empty.png", b"", "image/png")}}, 422, "empty_upload", []),
        ({"data": {"image_url": ""}}, 400, "missing_image", []),
        # ...JSON bodies, read as JSON (never as an empty form)...
        ({"json": {"image_url": "http://127.0.0.1:9/a.png"}}, 422, "url_refused", []),
        ({"json": {"options": {"seed": 7}}}, 400, "missing_image", []),
        ({"json": {"image_url": "http://127.0.0.1:9/a.png", "options": {"seed": "7"}}}, 422, "invalid_options",
         ["seed"]),
        ({"json": {"image": "aGVsbG8="}}, 422, "invalid_request", ["image"]),
        ({"content": b"{not json", "headers": {"content-type": "application/json"}}, 422, "invalid_request", []),
        # ...and the rest: nothing at all, or a body of another kind.
        ({"content": b""}, 400, "missing_image", []),
        ({"content": b"<job/>", "headers": {"content-type": "application/xml"}}, 415, "unsupported_media_type",
         ["multipart/form-data", "application/json"]),
    ],
    ids=["text-for-file", "file-for-text", "empty-file-input", "zero-byte-file", "empty-url", "json-internal-url",
         "json-without-image", "json-string-as-number", "json-unknown-field", "json-malformed", "no-body", "xml-body"],
)
def test_create_job_answers_odd_bodies_by_their_kind(s3_stack, request_kwargs, status, code, words, nothing_created):
    response = httpx.post(f"{s3_stack.api_url}/v1/jobs", timeout=30, **request_kwargs)
    assert_error(response, status, code, *words)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9/photo.png",
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.1/photo.png",
        "http://[::1]/photo.png",
        "http://0.0.0.0/photo.png",
        "file:///etc/passwd",
        "ftp://example.com/photo.png",
    ],
)
def test_create_job_refuses_image_url_to_internal_addresses(s3_stack, url, nothing_created):
    assert_error(submit(s3_stack.api_url, image_url=url), 422, "url_refused")


def test_create_job_refuses_redirect_to_loopback(s3_stack, web_server, nothing_created):
    # "localhost" is allowlisted in this stack; the redirect target 127.0.0.1 is not.
    response = submit(s3_stack.api_url, image_url=web_server.url("/redirect-to-loopback"))
    assert_error(response, 422, "url_refused", "127.0.0.1")


def test_create_job_refuses_webhook_to_metadata_service(s3_stack, sample_photo, nothing_created):
    response = submit(s3_stack.api_url, sample_photo.read_bytes(), webhook_url="http://169.254.169.254/hook")
    assert_error(response, 422, "url_refused")


@pytest.mark.parametrize("body", ["form", "json"])
def test_create_job_fetches_image_url_from_allowlisted_host(s3_stack, web_server, body):
    url = web_server.url("/photo.png")
    if body == "form":
        response = submit(s3_stack.api_url, image_url=url, options=json.dumps({"seed": 1}))
    else:  # as clients of hosted APIs send it
        response = httpx.post(f"{s3_stack.api_url}/v1/jobs", json={"image_url": url, "options": {"seed": 1}}, timeout=30)
    assert response.status_code == 202, response.text
    job_id = response.json()["id"]
    assert response.headers["location"] == f"/v1/jobs/{job_id}"
    assert httpx.get(f"{s3_stack.api_url}/v1/jobs/{job_id}").json()["options"]["seed"] == 1
    canceled = httpx.post(f"{s3_stack.api_url}/v1/jobs/{job_id}/cancel").json()
    assert canceled["status"] in ("canceled", "running")


@pytest.mark.parametrize(
    "options, field",
    [
        ({"stage1_steps": 0}, "stage1_steps"),
        ({"stage2_steps": 1000}, "stage2_steps"),
        ({"guidance_scale": -1}, "guidance_scale"),
        ({"cfg_strength": 50}, "cfg_strength"),
        ({"texture_size": 700}, "texture_size"),
        ({"simplify": 1.0}, "simplify"),
        ({"seed": -5}, "seed"),
        ({"colour": "blue"}, "colour"),
        ({"stage1_steps": True}, "stage1_steps"),  # strict: a boolean is not a step count
        ({"seed": "7"}, "seed"),  # strict: a string is not a number
    ],
)
def test_create_job_rejects_options_out_of_bounds(s3_stack, sample_photo, options, field, nothing_created):
    response = submit(s3_stack.api_url, sample_photo.read_bytes(), options=json.dumps(options))
    assert_error(response, 422, "invalid_options", field)


def test_create_job_rejects_options_that_are_not_json(s3_stack, sample_photo, nothing_created):
    response = submit(s3_stack.api_url, sample_photo.read_bytes(), options="seed=4")
    assert_error(response, 422, "invalid_options")


def test_unknown_job_is_404(s3_stack):
    for path in ("/v1/jobs/does-not-exist", "/v1/jobs/does-not-exist/result"):
        assert_error(httpx.get(f"{s3_stack.api_url}{path}"), 404, "job_not_found")
    assert_error(httpx.post(f"{s3_stack.api_url}/v1/jobs/does-not-exist/cancel"), 404, "job_not_found")


def test_oversized_body_is_refused_before_it_is_read(s3_stack, nothing_created):
    # Declare a body ten times the cap and send none of it: the answer comes at once.
    host, port = s3_stack.api_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        conn.sendall(
            f"POST /v1/jobs HTTP/1.1\r\nHost: {host}\r\nContent-Type: multipart/form-data; boundary=b\r\n"
            f"Content-Length: {10 * MAX_UPLOAD_BYTES}\r\n\r\n".encode()
        )
        answer = b""
        while b"}}" not in answer:
            chunk = conn.recv(4096)
            if not chunk:
                break
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413")
    assert json.loads(body)["error"]["code"] == "payload_too_large"


def test_oversized_chunked_upload_is_cut_off(s3_stack, nothing_created):
    def body():
        yield b"--b\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a.png\"\r\n\r\n\x89PNG\r\n\x1a\n"
        for _ in range(4 * MAX_UPLOAD_BYTES // 65536):
            yield b"\0" * 65536
        yield b"\r\n--b--\r\n"

    response = httpx.post(
        f"{s3_stack.api_url}/v1/jobs", content=body(), headers={"Content-Type": "multipart/form-data; boundary=b"}
    )
    # Refused by the body limit in front of the route (the route's own check says "the image is larger").
    assert_error(response, 413, "payload_too_large", "the request is larger than the limit")
