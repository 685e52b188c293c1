"""Outages answer quickly and truthfully: a hung S3 store, a storage directory that became a file.

Real processes: SeaweedFS frozen with SIGSTOP (connections are accepted by the
kernel, then nothing answers: the worst kind of outage), uvicorn on loopback.
"""

from __future__ import annotations

import os
import shutil
import signal
import time

import httpx
import pytest

from bench.quick_pipelines import tiny_person_png
from shared.storage.s3 import S3Storage
from client.stack import RedisServer, SeaweedS3, wait_until
from tests.support.fault_stack import Stack

pytestmark = pytest.mark.slow

ANSWER_WITHIN_S = 5.0


def timed(call):
    started = time.monotonic()
    response = call()
    return response, time.monotonic() - started


def submit(stack: Stack) -> httpx.Response:
    return httpx.post(f"{stack.api_url}/v1/jobs", timeout=60, headers={"Idempotency-Key": "hung-store"},
                      files={"image": ("person.png", tiny_person_png(), "image/png")})


def test_a_hung_s3_store_answers_readyz_and_submissions_within_five_seconds(tmp_path):
    seaweed = SeaweedS3(tmp_path).start()
    redis_server = RedisServer(tmp_path, aof=False).start()
    stack = Stack(tmp_path, redis_server, **seaweed.storage_env("hung"))
    try:
        # The bucket first, with time to spare: a freshly started SeaweedFS can be slow to create
        # one, and the API creates it (if missing) before it answers.
        store = S3Storage(endpoint=seaweed.endpoint, public_endpoint=None, bucket="hung", region="us-east-1",
                          access_key=seaweed.ACCESS_KEY, secret_key=seaweed.SECRET_KEY)
        wait_until(lambda: store.ensure_bucket() or True, 90, "the bucket", interval=1, errors=(Exception,))
        stack.start_api()
        ready, _ = timed(lambda: httpx.get(f"{stack.api_url}/readyz", timeout=30))
        assert ready.json()["checks"]["storage"]["ok"] is True, ready.text

        os.kill(seaweed.process.pid, signal.SIGSTOP)
        try:
            ready, ready_s = timed(lambda: httpx.get(f"{stack.api_url}/readyz", timeout=60))
            refused, refused_s = timed(lambda: submit(stack))
        finally:
            os.kill(seaweed.process.pid, signal.SIGCONT)
        print(f"\nhung store: /readyz answered in {ready_s:.2f} s, POST /v1/jobs in {refused_s:.2f} s")
        assert ready.status_code == 503 and ready.json()["checks"]["storage"]["ok"] is False, ready.text
        assert ready_s <= ANSWER_WITHIN_S
        assert refused.status_code == 503, refused.text
        assert refused.json()["error"] == {
            "code": "storage_unavailable", "message": refused.json()["error"]["message"], "retryable": True}
        assert int(refused.headers["Retry-After"]) >= 1
        assert refused_s <= ANSWER_WITHIN_S

        # The store answers again: ready, and the same idempotency key makes a new job.
        back = httpx.get(f"{stack.api_url}/readyz", timeout=30).json()
        assert back["checks"]["storage"]["ok"] is True, back
        assert submit(stack).status_code == 202
    finally:
        stack.stop()
        redis_server.stop()
        seaweed.stop()


def test_readyz_writes_to_local_storage_and_reports_a_directory_that_became_a_file(tmp_path, redis_server):
    stack = Stack(tmp_path, redis_server)
    try:
        stack.start_api()
        storage = tmp_path / "storage"
        assert httpx.get(f"{stack.api_url}/readyz", timeout=10).json()["checks"]["storage"]["ok"] is True
        assert [p.name for p in storage.iterdir() if p.name.startswith(".tmp-")] == []  # the probe is deleted

        shutil.rmtree(storage)
        storage.write_bytes(b"not a directory")
        answer = httpx.get(f"{stack.api_url}/readyz", timeout=10)
        assert answer.status_code == 503
        assert answer.json()["checks"]["storage"] == {"ok": False, "detail": "local: NotADirectoryError"}
    finally:
        stack.stop()
