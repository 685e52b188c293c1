"""The object store going away while a job uploads its results (SeaweedFS, real processes)."""

from __future__ import annotations

import json

import httpx
import pytest

from bench.quick_pipelines import tiny_person_png
from client.stack import RedisServer, SeaweedS3, wait_until
from shared.jobs import TERMINAL, JobStatus
from tests.support.fault_pipelines import LONG_STEPS
from tests.support.fault_stack import Stack
from tests.support.webhook_receiver import WebhookReceiver

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def seaweed(tmp_path_factory):
    server = SeaweedS3(tmp_path_factory.mktemp("weed")).start()
    yield server
    server.stop()


def submit_with_key(stack: Stack, key: str) -> httpx.Response:
    return httpx.post(f"{stack.api_url}/v1/jobs", headers={"Idempotency-Key": key}, timeout=30,
                      files={"image": ("person.png", tiny_person_png(), "image/png")})


def test_upload_during_an_outage_fails_as_storage_unavailable_then_recovers(seaweed, tmp_path):
    redis_server = RedisServer(tmp_path, aof=False).start()
    receiver = WebhookReceiver().start()
    stack = Stack(tmp_path, redis_server, **seaweed.storage_env("outage"),
                  SYNCHUMAN_STORAGE_RETRY__ATTEMPTS="3", SYNCHUMAN_STORAGE_RETRY__FIRST_DELAY_S="0.2",
                  SYNCHUMAN_WEBHOOKS__ALLOW_HOSTS='["127.0.0.1"]')
    try:
        stack.start_api()
        stack.start_worker()
        stack.wait_warm()
        job = stack.submit_options({"stage1_steps": LONG_STEPS}, webhook_url=receiver.url("/hooks/outage"))
        stack.wait_status(job, {"running"}, timeout_s=30)
        seaweed.stop()  # gone before the worker uploads anything
        failed = stack.wait_terminal(job, timeout_s=90)
        assert failed.status is JobStatus.failed, stack.logs()
        assert failed.error.code == "storage_unavailable" and failed.error.retryable is True
        assert failed.outputs == {}  # never "succeeded" without its files
        assert [e.status for e in failed.history if e.status in TERMINAL] == [JobStatus.failed]
        assert "storage unavailable; giving up" in stack.workers[0].output()
        # The same worker delivers webhooks once it has tried to remove the job's files from the dead store.
        [completed] = wait_until(lambda: receiver.calls_to("/hooks/outage"), 120, "the completed webhook")
        assert json.loads(completed.body)["error"]["code"] == "storage_unavailable"
        # A submission during the outage is refused as retryable and does not keep its idempotency key.
        during = submit_with_key(stack, "during-outage")
        assert during.status_code == 503 and during.json()["error"]["code"] == "storage_unavailable", during.text
        assert int(during.headers["Retry-After"]) >= 1

        seaweed.start()  # back: the same worker serves the next job with its files
        ok = stack.wait_terminal(stack.submit(), timeout_s=60)
        assert ok.status is JobStatus.succeeded, stack.logs()
        assert "stage2/output.glb" in ok.outputs
        retried = submit_with_key(stack, "during-outage")
        assert retried.status_code == 202, retried.text  # a new job, not a replay of one never created
        assert stack.wait_terminal(retried.json()["id"], timeout_s=60).status is JobStatus.succeeded
        assert len(receiver.calls_to("/hooks/outage")) == 1
    finally:
        stack.stop()
        redis_server.stop()
        receiver.stop()
