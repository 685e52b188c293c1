"""The admission script against a real Redis: token bucket, jobs in flight, queue cap."""

from __future__ import annotations

import json
import time

from shared.limits import LimitConfig, Limiter, Verdict

PREFIX = "admission-test"
"""Key prefix of this module's records in the session's Redis (``redis_client``)."""


def _record(client, job_id: str, status: str) -> None:
    client.set(f"{PREFIX}:job:{job_id}", json.dumps({"id": job_id, "status": status}))


def test_token_bucket_allows_a_burst_then_refills_at_the_rate(redis_client):
    limiter = Limiter(redis_client, LimitConfig(rate_per_s=5.0, burst=3, max_in_flight=0, max_queue_length=0), prefix=PREFIX)
    verdicts = [limiter.admit("k", f"j{i}").verdict for i in range(4)]
    assert verdicts == [Verdict.admitted] * 3 + [Verdict.rate_limited]
    refused = limiter.admit("k", "j5")
    assert 0 < refused.retry_after_s <= 0.2 + 1e-6 and refused.retry_after_header == "1"
    time.sleep(0.25)
    assert limiter.admit("k", "j6").admitted
    assert limiter.admit("other", "j7").admitted  # buckets are per key


def test_in_flight_cap_counts_only_unfinished_jobs(redis_client):
    limiter = Limiter(redis_client, LimitConfig(rate_per_s=0, burst=1, max_in_flight=2, max_queue_length=0), prefix=PREFIX)
    for job in ("a", "b"):
        assert limiter.admit("k", job).admitted
        _record(redis_client, job, "queued")
    refused = limiter.admit("k", "c", busy_retry_s=42)
    assert refused.verdict is Verdict.too_many_in_flight and refused.retry_after_header == "42"
    _record(redis_client, "a", "running")
    assert not limiter.admit("k", "c").admitted
    _record(redis_client, "a", "succeeded")
    assert limiter.admit("k", "c").admitted
    assert redis_client.zscore(f"{PREFIX}:inflight:k", "a") is None  # pruned once finished


def test_admitted_job_that_never_appears_counts_only_for_the_grace_period(redis_client, monkeypatch):
    import shared.limits as limits

    monkeypatch.setattr(limits, "ADMISSION_GRACE_S", 0.2)
    limiter = Limiter(redis_client, LimitConfig(rate_per_s=0, burst=1, max_in_flight=1, max_queue_length=0), prefix=PREFIX)
    assert limiter.admit("k", "ghost").admitted
    assert limiter.admit("k", "next").verdict is Verdict.too_many_in_flight
    time.sleep(0.3)
    assert limiter.admit("k", "next").admitted


def test_queue_cap_refuses_everyone_before_spending_tokens(redis_client):
    limiter = Limiter(redis_client, LimitConfig(rate_per_s=1, burst=1, max_in_flight=5, max_queue_length=2), prefix=PREFIX)
    redis_client.zadd(f"{PREFIX}:queue", {"q1": 1, "q2": 2})
    full = limiter.admit("k", "x", busy_retry_s=7)
    assert full.verdict is Verdict.queue_full and full.retry_after_header == "7"
    redis_client.zrem(f"{PREFIX}:queue", "q2")
    assert limiter.admit("k", "x").admitted  # the refused attempt did not use the only token


def test_many_concurrent_admissions_never_exceed_the_bucket(redis_server, redis_client):
    import concurrent.futures

    import redis as redis_lib

    config = LimitConfig(rate_per_s=0.001, burst=10, max_in_flight=0, max_queue_length=0)

    def admit(i: int) -> bool:
        client = redis_lib.Redis.from_url(redis_server.url)
        try:
            return Limiter(client, config, prefix=PREFIX).admit("shared-key", f"job{i}").admitted
        finally:
            client.close()

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(admit, range(40)))
    assert sum(results) == 10


def test_with_every_check_disabled_admission_needs_no_round_trip(redis_client):
    import redis as redis_lib

    config = LimitConfig(rate_per_s=0, burst=1, max_in_flight=0, max_queue_length=0)
    assert config.enforces_nothing
    unreachable = redis_lib.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5)
    assert Limiter(unreachable, config, prefix=PREFIX).admit("k", "a").admitted
    # Any enabled check still asks Redis.
    assert not LimitConfig(rate_per_s=0, burst=1, max_in_flight=0, max_queue_length=1).enforces_nothing
    assert Limiter(redis_client, LimitConfig(rate_per_s=0, burst=1, max_in_flight=0, max_queue_length=1),
                   prefix=PREFIX).admit("k", "b").admitted
