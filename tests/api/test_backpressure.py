"""Per-key limits (429), the queue cap (503), the CORS allowlist and API shutdown, on a live API.

No worker runs here: submitted jobs stay queued, which is exactly the load
the limits are about.
"""

from __future__ import annotations

import json
import signal
import threading
import time

import httpx
import pytest

from bench.quick_pipelines import tiny_person_png
from client.stack import RedisServer
from shared.auth import KeyStore
from tests.support.fault_stack import Stack

pytestmark = pytest.mark.slow

ALLOWED_ORIGIN = "https://studio.example"


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory):
    server = RedisServer(tmp_path_factory.mktemp("limits-redis"), aof=False).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def stack(redis_server, tmp_path_factory):
    stack = Stack(
        tmp_path_factory.mktemp("limits"), redis_server,
        SYNCHUMAN_AUTH__ENABLED="true",
        SYNCHUMAN_LIMITS__SUBMIT_RATE_PER_S="0.01",
        SYNCHUMAN_LIMITS__SUBMIT_BURST="3",
        SYNCHUMAN_LIMITS__MAX_IN_FLIGHT="2",
        SYNCHUMAN_LIMITS__MAX_QUEUE_LENGTH="4",
        SYNCHUMAN_JOBS__DEFAULT_JOB_S="42",
        SYNCHUMAN_CORS__ALLOW_ORIGINS=json.dumps([ALLOWED_ORIGIN]),
    ).start_api()
    yield stack
    stack.stop()


def token(stack: Stack, redis_server: RedisServer, name: str) -> str:
    import redis

    client = redis.Redis.from_url(redis_server.url)
    try:
        return KeyStore(client, prefix=stack.prefix).create(name).token
    finally:
        client.close()


def submit(stack: Stack, key: str, idempotency_key: str | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"}
    if idempotency_key:
        headers["Idempotency-Key"] = idempotency_key
    return httpx.post(
        f"{stack.api_url}/v1/jobs", headers=headers, timeout=30,
        files={"image": ("p.png", tiny_person_png(), "image/png")},
    )


def cancel(stack: Stack, key: str, job_id: str) -> None:
    response = httpx.post(f"{stack.api_url}/v1/jobs/{job_id}/cancel", headers={"Authorization": f"Bearer {key}"})
    assert response.json()["status"] == "canceled"


def test_replays_of_an_idempotent_submission_spend_no_rate_tokens(stack, redis_server):
    e = token(stack, redis_server, "e")
    first = submit(stack, e, idempotency_key="order-1")
    assert first.status_code == 202
    for _ in range(4):  # more replays than the burst allows submissions
        replay = submit(stack, e, idempotency_key="order-1")
        assert replay.status_code == 200 and replay.json()["id"] == first.json()["id"]
    cancel(stack, e, first.json()["id"])
    for _ in range(2):  # the burst of 3 still has two tokens
        created = submit(stack, e)
        assert created.status_code == 202
        cancel(stack, e, created.json()["id"])
    assert submit(stack, e).status_code == 429


def test_limits_answer_429_then_503_with_retry_after(stack, redis_server):
    a, b, c, d = (token(stack, redis_server, n) for n in "abcd")

    # Token bucket: a burst of 3, then "slow down" — even with nothing in flight.
    for _ in range(3):
        created = submit(stack, a)
        assert created.status_code == 202
        cancel(stack, a, created.json()["id"])
    limited = submit(stack, a)
    assert limited.status_code == 429 and limited.json()["error"]["code"] == "rate_limited"
    assert int(limited.headers["retry-after"]) >= 60  # one token per 100 s

    # Jobs in flight: 2 per key; the third waits for one of them to finish.
    assert [submit(stack, b).status_code for _ in range(2)] == [202, 202]
    busy = submit(stack, b)
    assert busy.status_code == 429 and busy.json()["error"]["code"] == "too_many_jobs_in_flight"
    assert busy.headers["retry-after"] == "42" and busy.json()["error"]["retryable"] is True

    # Queue cap: 4 queued in all, then 503 for everyone.
    c_created = [submit(stack, c) for _ in range(2)]
    assert [r.status_code for r in c_created] == [202, 202]
    c_jobs = [r.json()["id"] for r in c_created]
    full = submit(stack, d, idempotency_key="d-order")
    assert full.status_code == 503 and full.json()["error"]["code"] == "queue_full"
    assert full.headers["retry-after"] == "42"
    # The refused submission did not keep its key: once there is room, the retry creates the job.
    for job_id in c_jobs:
        cancel(stack, c, job_id)
    retried = submit(stack, d, idempotency_key="d-order")
    assert retried.status_code == 202, retried.text


def test_cors_allows_only_listed_origins(stack):
    def preflight(origin: str) -> httpx.Response:
        return httpx.options(f"{stack.api_url}/v1/jobs", headers={
            "Origin": origin, "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization"})

    allowed = preflight(ALLOWED_ORIGIN)
    assert allowed.status_code == 200 and allowed.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
    refused = preflight("https://attacker.example")
    assert refused.headers.get("access-control-allow-origin") != "https://attacker.example"


def test_sigterm_lets_an_in_flight_upload_finish(redis_server, tmp_path):
    stack = Stack(tmp_path, redis_server).start_api()
    try:
        request = httpx.Request("POST", f"{stack.api_url}/v1/jobs",
                                files={"image": ("p.png", tiny_person_png(400), "image/png")})
        body = request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() in ("content-type", "content-length")}
        halfway = threading.Event()

        def slow_body():
            chunk = len(body) // 8 + 1
            for i in range(0, len(body), chunk):
                yield body[i:i + chunk]
                if i == 0:
                    halfway.set()
                time.sleep(0.25)

        result: dict = {}

        def upload():
            result["response"] = httpx.post(f"{stack.api_url}/v1/jobs", content=slow_body(), headers=headers,
                                            timeout=30)

        thread = threading.Thread(target=upload)
        thread.start()
        assert halfway.wait(10)
        stack.api.signal(signal.SIGTERM)
        time.sleep(0.3)
        with pytest.raises(httpx.ConnectError):  # no new connections once shutting down
            httpx.get(f"{stack.api_url}/healthz", timeout=2)
        thread.join(30)
        assert result["response"].status_code == 202, result["response"].text
        assert stack.api.wait(30) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal once drained
        assert stack.record(result["response"].json()["id"]).status.value == "queued"
    finally:
        stack.stop()
