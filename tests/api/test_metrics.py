"""Redis-side job metrics and their Prometheus exposition."""

from __future__ import annotations

import asyncio

import redis.asyncio as aredis
from prometheus_client.parser import text_string_to_metric_families

from api.routes.metrics import render_metrics
from shared.heartbeat import WorkerHeartbeat
from shared.job_metrics import JobMetrics, MetricKeys, count_transition, read_snapshot

PREFIX = "metrics-test"
"""Key prefix of this module's records in the session's Redis (``redis_client``)."""


def _snapshot(url: str):
    async def read():
        client = aredis.Redis.from_url(url)
        try:
            return await read_snapshot(client, prefix=PREFIX)
        finally:
            await client.aclose()

    return asyncio.run(read())


def _samples(body: bytes) -> dict[tuple[str, tuple], float]:
    out = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def test_counts_and_histograms_written_by_workers_reach_the_exposition(redis_server, redis_client):
    metrics = JobMetrics(redis_client, prefix=PREFIX)
    keys = MetricKeys(PREFIX)
    moves = [(None, "queued", None), (None, "queued", None), ("queued", "running", None),
             ("running", "failed", "timeout")]
    for old, new, code in moves:
        pipe = redis_client.pipeline()
        count_transition(pipe, keys, old, new, code)
        pipe.execute()
    redis_client.zadd(f"{PREFIX}:queue", {"a": 1})
    metrics.observe_wait(0.3)
    metrics.observe_wait(20.0)
    metrics.observe_stage("stage1", 0.07)
    metrics.observe_stage("stage1", 4000.0)
    metrics.count_webhook("delivered")

    worker = WorkerHeartbeat(worker_id="w1", hostname="h", pid=1, pipeline="preview",
                             pipeline_version="1", device="cpu", state="busy")
    samples = _samples(render_metrics(_snapshot(redis_server.url), [worker]))

    assert samples[("synchuman_queue_depth", ())] == 1
    assert samples[("synchuman_jobs", (("status", "queued"),))] == 1
    assert samples[("synchuman_jobs", (("status", "running"),))] == 0
    assert samples[("synchuman_jobs", (("status", "failed"),))] == 1
    assert samples[("synchuman_job_failures_total", (("code", "timeout"),))] == 1
    assert samples[("synchuman_webhook_deliveries_total", (("outcome", "delivered"),))] == 1
    assert samples[("synchuman_job_wait_seconds_bucket", (("le", "0.5"),))] == 1
    assert samples[("synchuman_job_wait_seconds_bucket", (("le", "30.0"),))] == 2
    assert samples[("synchuman_job_wait_seconds_count", ())] == 2
    assert abs(samples[("synchuman_job_wait_seconds_sum", ())] - 20.3) < 1e-9
    assert samples[("synchuman_stage_run_seconds_bucket", (("le", "0.1"), ("stage", "stage1")))] == 1
    assert samples[("synchuman_stage_run_seconds_bucket", (("le", "600.0"), ("stage", "stage1")))] == 1
    assert samples[("synchuman_stage_run_seconds_bucket", (("le", "+Inf"), ("stage", "stage1")))] == 2
    assert samples[("synchuman_workers", ())] == 1
    assert samples[("synchuman_worker_warm", (("device", "cpu"), ("pipeline", "preview"), ("worker", "w1")))] == 1
    assert samples[("synchuman_worker_busy", (("worker", "w1"),))] == 1


def test_an_empty_deployment_still_exposes_every_family(redis_server, redis_client):
    body = render_metrics(_snapshot(redis_server.url), []).decode()
    for name in ("synchuman_queue_depth", "synchuman_jobs", "synchuman_job_failures_total", "synchuman_webhook_deliveries_total",
                 "synchuman_job_wait_seconds", "synchuman_stage_run_seconds", "synchuman_worker_warm",
                 "synchuman_worker_gpu_memory_allocated_bytes"):
        assert f"# TYPE {name} " in body
