"""Both storage backends: S3 against SeaweedFS (signatures checked), local disk behind the API."""

from __future__ import annotations

import asyncio
import time
import uuid

import boto3
import httpx
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from tests.support.service_stack import Stack, service_env
from shared.storage.local import LocalStorage
from shared.storage.s3 import S3Storage
from shared.storage.sigv4 import PresignerV4

pytestmark = pytest.mark.slow  # starts servers and workers as real processes


@pytest.fixture(scope="module")
def s3(s3_server) -> S3Storage:
    storage = S3Storage(
        endpoint=s3_server.endpoint, public_endpoint=None, bucket="storage-tests", region="us-east-1",
        access_key=s3_server.ACCESS_KEY, secret_key=s3_server.SECRET_KEY,
    )
    storage.ensure_bucket()
    return storage


def test_s3_put_list_get_delete(s3):
    prefix = f"jobs/{uuid.uuid4().hex}/"
    s3.put_bytes(prefix + "b.png", b"bee", "image/png")
    s3.put_bytes(prefix + "a/c.glb", b"glTF")
    assert s3.list_keys(prefix) == [prefix + "a/c.glb", prefix + "b.png"]
    assert s3.get_bytes(prefix + "b.png") == b"bee"
    with pytest.raises(KeyError):
        s3.get_bytes(prefix + "missing")
    assert s3.delete_prefix(prefix) == 2
    assert s3.list_keys(prefix) == []


@pytest.mark.parametrize("key", ["input.png", "stage2/output glb+.glb", "a b/ü+%.png", "x/~y=z&w.zip"])
def test_s3_async_upload_is_the_same_signed_put(s3_server, s3, key):
    key = f"jobs/{uuid.uuid4().hex}/{key}"

    async def upload(storage: S3Storage, data: bytes) -> None:
        try:
            await storage.put_bytes_async(key, data, "image/png")
        finally:
            await storage.aclose()

    asyncio.run(upload(s3, b"async-bytes"))
    assert s3.get_bytes(key) == b"async-bytes"
    assert s3.client.head_object(Bucket="storage-tests", Key=key)["ContentType"] == "image/png"
    # A wrong secret is an error answer from the store, raised as put_object raises it.
    forged = S3Storage(
        endpoint=s3_server.endpoint, public_endpoint=None, bucket="storage-tests", region="us-east-1",
        access_key=s3_server.ACCESS_KEY, secret_key="not-the-secret",
    )
    with pytest.raises(ClientError) as refused:
        asyncio.run(upload(forged, b"forged"))
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert s3.get_bytes(key) == b"async-bytes"


def test_presigned_url_works_with_a_plain_http_client(s3):
    key = f"jobs/{uuid.uuid4().hex}/stage2/output glb+.glb"
    s3.put_bytes(key, b"glTF-bytes")
    link = s3.download_url(key, 300)
    assert link.expires_at == pytest.approx(time.time() + 300, abs=2)
    response = httpx.get(link.url)
    assert response.status_code == 200 and response.content == b"glTF-bytes"


def test_tampered_presigned_url_is_refused(s3):
    key = f"jobs/{uuid.uuid4().hex}/x.png"
    other = f"jobs/{uuid.uuid4().hex}/y.png"
    s3.put_bytes(key, b"x")
    s3.put_bytes(other, b"y")
    url = s3.download_url(key, 300).url
    signature = url.rsplit("=", 1)[1]
    flipped = url[: -len(signature)] + ("0" if signature[0] != "0" else "1") + signature[1:]
    assert httpx.get(flipped).status_code == 403
    assert httpx.get(url.replace(key, other)).status_code == 403
    assert httpx.get(url.replace("X-Amz-Expires=300", "X-Amz-Expires=99999")).status_code == 403


def test_expired_presigned_url_is_refused(s3):
    key = f"jobs/{uuid.uuid4().hex}/x.png"
    s3.put_bytes(key, b"x")
    stale = s3.download_url(key, 60, now=time.time() - 120)
    response = httpx.get(stale.url)
    assert response.status_code == 403 and "expired" in response.text.lower()


def test_presigned_url_is_signed_for_the_public_endpoint(s3_server, s3):
    key = f"jobs/{uuid.uuid4().hex}/x.png"
    s3.put_bytes(key, b"public")
    public = s3_server.endpoint.replace("127.0.0.1", "localhost")
    through_public = S3Storage(
        endpoint=s3_server.endpoint, public_endpoint=public, bucket="storage-tests", region="us-east-1",
        access_key=s3_server.ACCESS_KEY, secret_key=s3_server.SECRET_KEY,
    )
    url = through_public.download_url(key, 60).url
    assert url.startswith(public + "/storage-tests/")
    assert httpx.get(url).content == b"public"
    # The same signature presented to another host name is refused: the host is signed.
    assert httpx.get(url.replace(public, s3_server.endpoint)).status_code == 403


@pytest.mark.parametrize("endpoint", ["http://127.0.0.1:8333", "https://s3.example.com", "http://minio:9000"])
@pytest.mark.parametrize("key", ["jobs/abc/stage1/color_0.png", "jobs/a b/ü+%.glb", "jobs/x/~y=z&w.zip"])
def test_presigner_matches_botocore_byte_for_byte(endpoint, key):
    client = boto3.client(
        "s3", endpoint_url=endpoint, region_name="eu-west-3", aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key="wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
    )
    presigner = PresignerV4(endpoint, "AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "eu-west-3")
    for _ in range(3):  # retry if the second ticks over between the two calls
        now = time.time()
        expected = client.generate_presigned_url("get_object", Params={"Bucket": "bkt", "Key": key}, ExpiresIn=900)
        if int(time.time()) == int(now):
            break
    assert presigner.presign_get("bkt", key, 900, now=now) == expected


def test_local_writes_are_whole_and_keys_cannot_escape(tmp_path):
    storage = LocalStorage(tmp_path / "root", signing_secret="s", public_base_url="http://api")
    storage.put_bytes("jobs/1/a.png", b"one")
    storage.put_bytes("jobs/1/a.png", b"two")
    assert storage.get_bytes("jobs/1/a.png") == b"two"
    assert storage.list_keys("jobs/1") == ["jobs/1/a.png"]
    for bad in ("../outside", "/etc/passwd", "jobs/../../x", "jobs//x"):
        with pytest.raises(KeyError):
            storage.put_bytes(bad, b"x")
    assert not (tmp_path / "outside").exists()


def test_local_signed_urls_are_served_and_tampered_or_expired_ones_refused(redis_url, tmp_path):
    storage_dir = tmp_path / "storage"
    env = service_env(
        redis_url, f"local-{uuid.uuid4().hex[:6]}",
        storage={"backend": "local", "local_dir": str(storage_dir), "signing_secret": "local-secret"},
    )
    (tmp_path / "logs").mkdir()
    stack = Stack(env=env, logs=tmp_path / "logs")
    try:
        stack.start_api()
        storage = LocalStorage(storage_dir, signing_secret="local-secret", public_base_url=stack.api_url)
        storage.put_bytes("jobs/j1/stage2/output.glb", b"glTF-local")
        storage.put_bytes("jobs/j2/stage2/output.glb", b"other job")
        link = storage.download_url("jobs/j1/stage2/output.glb", 60)
        response = httpx.get(link.url)
        assert response.status_code == 200 and response.content == b"glTF-local"
        assert response.headers["content-type"] == "model/gltf-binary"

        assert httpx.get(link.url.replace("j1", "j2")).status_code == 403
        assert httpx.get(link.url[:-4] + "0000").status_code == 403
        expired = storage.download_url("jobs/j1/stage2/output.glb", 60, now=time.time() - 120)
        refused = httpx.get(expired.url)
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "invalid_signature"
        forged = LocalStorage(storage_dir, signing_secret="guess", public_base_url=stack.api_url)
        assert httpx.get(forged.download_url("jobs/j1/stage2/output.glb", 60).url).status_code == 403
    finally:
        stack.stop()
