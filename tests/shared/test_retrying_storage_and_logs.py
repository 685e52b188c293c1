"""Storage retries with backoff, and log lines that never leak secrets."""

from __future__ import annotations

import asyncio
import json
import logging
import time

import pytest

from shared.errors import StorageUnavailableError
from shared.settings import StorageRetrySettings
from shared.storage.local import LocalStorage
from shared.storage.retrying import RetryingStorage
from shared.structured_logging import JsonFormatter, job_id_var, redact, request_id_var


class FlakyStore:
    """A local store whose writes fail ``failures`` times first (a store coming back up)."""

    def __init__(self, inner: LocalStorage, failures: int) -> None:
        self.inner = inner
        self.name = inner.name
        self.failures = failures
        self.calls = 0

    def put_bytes(self, key, data, content_type="application/octet-stream"):
        self.calls += 1
        if self.calls <= self.failures:
            raise ConnectionError("connection refused")
        self.inner.put_bytes(key, data, content_type)

    async def put_bytes_async(self, key, data, content_type="application/octet-stream"):
        self.put_bytes(key, data, content_type)

    def get_bytes(self, key):
        self.calls += 1
        return self.inner.get_bytes(key)


@pytest.fixture()
def local(tmp_path):
    return LocalStorage(tmp_path, signing_secret="s", public_base_url="http://x")


def test_writes_are_retried_with_growing_delays_until_the_store_answers(local):
    sleeps = []
    store = RetryingStorage(FlakyStore(local, failures=2), StorageRetrySettings(attempts=4, first_delay_s=0.5),
                            sleep=sleeps.append)
    store.put_bytes("jobs/a/x.bin", b"data")
    assert local.get_bytes("jobs/a/x.bin") == b"data"
    assert len(sleeps) == 2 and 0.4 <= sleeps[0] <= 0.6 and 0.8 <= sleeps[1] <= 1.2


def test_a_lasting_outage_becomes_storage_unavailable(local):
    sleeps = []
    flaky = FlakyStore(local, failures=99)
    store = RetryingStorage(flaky, StorageRetrySettings(attempts=3, first_delay_s=1, max_delay_s=1.5), sleep=sleeps.append)
    with pytest.raises(StorageUnavailableError) as caught:
        store.put_bytes("jobs/a/x.bin", b"data")
    assert caught.value.code == "storage_unavailable" and caught.value.retryable
    assert flaky.calls == 3 and max(sleeps) <= 1.5 * 1.2


def test_event_loop_writes_are_retried_the_same_way(local):
    retry = StorageRetrySettings(attempts=3, first_delay_s=0.01)
    asyncio.run(RetryingStorage(FlakyStore(local, failures=2), retry).put_bytes_async("jobs/a/y.bin", b"async"))
    assert local.get_bytes("jobs/a/y.bin") == b"async"
    flaky = FlakyStore(local, failures=99)
    with pytest.raises(StorageUnavailableError):
        asyncio.run(RetryingStorage(flaky, retry).put_bytes_async("jobs/a/z.bin", b"never"))
    assert flaky.calls == 3


def test_a_missing_object_is_an_answer_not_an_outage(local):
    sleeps = []
    flaky = FlakyStore(local, failures=0)
    with pytest.raises(KeyError):
        RetryingStorage(flaky, StorageRetrySettings(), sleep=sleeps.append).get_bytes("jobs/none")
    assert flaky.calls == 1 and sleeps == []


def test_secrets_are_masked_in_any_log_text():
    text = ("Authorization: Bearer shk_0a1b2c3d4e5f_S3cr3t-token_x and key shk_0a1b2c3d4e5f_S3cr3t "
            "url http://s3/b/k?X-Amz-Credential=AKIA/x&X-Amz-Signature=deadbeef&x=1 "
            "local /files/k?expires=1&signature=abc123 hook whsec_c2VjcmV0")
    masked = redact(text)
    for secret in ("S3cr3t", "AKIA", "deadbeef", "abc123", "c2VjcmV0"):
        assert secret not in masked
    assert "x=1" in masked and "expires=1" in masked


def test_json_lines_carry_request_and_job_ids_and_no_traceback():
    formatter = JsonFormatter("api")
    token_r, token_j = request_id_var.set("req-1234"), job_id_var.set("job-42")
    try:
        try:
            raise ValueError("bad thing at /srv/app/secret.py")
        except ValueError:
            record = logging.getLogger("t").makeRecord("t", logging.ERROR, __file__, 1, "failed %s", ("x",),
                                                       exc_info=__import__("sys").exc_info(),
                                                       extra={"stage": "stage1"})
        line = json.loads(formatter.format(record))
    finally:
        request_id_var.reset(token_r)
        job_id_var.reset(token_j)
    assert line["msg"] == "failed x" and line["request_id"] == "req-1234" and line["job_id"] == "job-42"
    assert line["stage"] == "stage1" and line["error"].startswith("ValueError")
    assert "traceback" not in line and "Traceback" not in json.dumps(line)


def test_a_forged_download_signature_of_any_characters_is_refused_not_a_crash(local):
    url = local.download_url("jobs/a/x.bin", 600)
    expires = int(url.expires_at)
    good = url.url.rsplit("signature=", 1)[1].split("&")[0]
    assert local.verify("jobs/a/x.bin", expires, good)
    for forged in ("=\U000e0e01", "é" * len(good), "", good[:-1]):
        assert local.verify("jobs/a/x.bin", expires, forged) is False


def test_retries_stop_at_the_deadline(local):
    flaky = FlakyStore(local, failures=99)
    store = RetryingStorage(flaky, StorageRetrySettings(attempts=10, first_delay_s=0.2, max_delay_s=0.2), deadline_s=0.5)
    started = time.monotonic()
    with pytest.raises(StorageUnavailableError) as caught:
        store.put_bytes("jobs/a/x.bin", b"data")
    assert time.monotonic() - started < 1.0 and flaky.calls <= 3
    assert caught.value.retry_after_s >= 1  # the API answers it with Retry-After


class HungStore(FlakyStore):
    """A store that accepts the connection and never answers (a frozen server)."""

    async def put_bytes_async(self, key, data, content_type="application/octet-stream"):
        self.calls += 1
        await asyncio.sleep(3600)


def test_an_event_loop_write_to_a_hung_store_ends_at_the_deadline(local):
    hung = HungStore(local, failures=0)
    store = RetryingStorage(hung, StorageRetrySettings(attempts=4, first_delay_s=0.05), deadline_s=0.4)
    started = time.monotonic()
    with pytest.raises(StorageUnavailableError):
        asyncio.run(store.put_bytes_async("jobs/a/x.bin", b"data"))
    assert time.monotonic() - started < 1.0 and hung.calls == 1
