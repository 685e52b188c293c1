"""``GET /metrics``: the service's numbers in the Prometheus exposition format.

Nothing here counts in process memory: the API may run as several processes
and the workers are other processes, so every number is read from Redis at
scrape time (``shared.job_metrics`` for counters and histograms, the worker
heartbeats for warm state and GPU memory) and handed to prometheus-client
through a collector built for this one scrape.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from fastapi import APIRouter
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from api.auth import METRICS_PATH
from api.context import ContextDep
from shared.heartbeat import WorkerHeartbeat, list_workers_async
from shared.job_metrics import HistogramData, MetricsSnapshot, read_snapshot
from shared.jobs import JobStatus

NAMESPACE = "synchuman"

router = APIRouter(include_in_schema=False)


def _buckets(data: HistogramData) -> list[tuple[str, float]]:
    """Cumulative ``(upper bound, count)`` pairs ending with +Inf."""
    pairs, running = [], 0
    for bound, count in zip((*data.buckets, float("inf")), data.counts, strict=True):
        running += count
        pairs.append(("+Inf" if bound == float("inf") else repr(bound), running))
    return pairs


class _ScrapeCollector(Collector):
    """Yields the metric families of one scrape from data already read."""

    def __init__(self, snapshot: MetricsSnapshot, workers: Sequence[WorkerHeartbeat]) -> None:
        self.snapshot = snapshot
        self.workers = workers

    def collect(self) -> Iterable[Metric]:
        s = self.snapshot
        depth = GaugeMetricFamily(f"{NAMESPACE}_queue_depth", "Jobs waiting in the queue.")
        depth.add_metric([], s.queue_depth)
        yield depth

        by_status = GaugeMetricFamily(
            f"{NAMESPACE}_jobs",
            "Jobs by status: current count for queued/running, total since deployment for terminal ones.",
            labels=["status"],
        )
        for status in JobStatus:
            by_status.add_metric([status.value], s.jobs_by_status.get(status.value, 0))
        yield by_status

        failures = CounterMetricFamily(
            f"{NAMESPACE}_job_failures", "Failed jobs by error code.", labels=["code"]
        )
        for code, count in sorted(s.failures.items()):
            failures.add_metric([code], count)
        yield failures

        webhooks = CounterMetricFamily(
            f"{NAMESPACE}_webhook_deliveries", "Webhook delivery attempts by outcome.", labels=["outcome"]
        )
        for outcome, count in sorted(s.webhooks.items()):
            webhooks.add_metric([outcome], count)
        yield webhooks

        wait = HistogramMetricFamily(
            f"{NAMESPACE}_job_wait_seconds", "Seconds from submission to the first start of a job."
        )
        stage = HistogramMetricFamily(
            f"{NAMESPACE}_stage_run_seconds", "Seconds one stage of one job ran.", labels=["stage"]
        )
        for (name, label), data in sorted(s.histograms.items()):
            if name == "wait":
                wait.add_metric([], _buckets(data), data.total)
            elif name == "stage":
                stage.add_metric([label], _buckets(data), data.total)
        yield wait
        yield stage

        warm = GaugeMetricFamily(
            f"{NAMESPACE}_worker_warm",
            "1 if the worker's pipelines are loaded (idle or busy), 0 while loading.",
            labels=["worker", "pipeline", "device"],
        )
        busy = GaugeMetricFamily(
            f"{NAMESPACE}_worker_busy", "1 while the worker runs a job.", labels=["worker"]
        )
        gpu_allocated = GaugeMetricFamily(
            f"{NAMESPACE}_worker_gpu_memory_allocated_bytes",
            "GPU memory held by tensors in the worker (CUDA workers only).",
            labels=["worker", "device"],
        )
        gpu_reserved = GaugeMetricFamily(
            f"{NAMESPACE}_worker_gpu_memory_reserved_bytes",
            "GPU memory reserved by the worker's caching allocator (CUDA workers only).",
            labels=["worker", "device"],
        )
        for w in self.workers:
            warm.add_metric([w.worker_id, w.pipeline, w.device], 1 if w.is_warm else 0)
            busy.add_metric([w.worker_id], 1 if w.state == "busy" else 0)
            allocated = getattr(w, "gpu_memory_allocated_bytes", None)
            reserved = getattr(w, "gpu_memory_reserved_bytes", None)
            if allocated is not None:
                gpu_allocated.add_metric([w.worker_id, w.device], allocated)
            if reserved is not None:
                gpu_reserved.add_metric([w.worker_id, w.device], reserved)
        workers = GaugeMetricFamily(f"{NAMESPACE}_workers", "Workers with a live heartbeat.")
        workers.add_metric([], len(self.workers))
        yield workers
        yield warm
        yield busy
        yield gpu_allocated
        yield gpu_reserved


def render_metrics(snapshot: MetricsSnapshot, workers: Sequence[WorkerHeartbeat]) -> bytes:
    """The exposition-format body of one scrape."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_ScrapeCollector(snapshot, workers))
    return generate_latest(registry)


@router.get(METRICS_PATH)
async def metrics(ctx: ContextDep) -> Response:
    snapshot = await read_snapshot(ctx.redis, prefix=ctx.settings.redis.key_prefix)
    workers = await list_workers_async(ctx.redis, ctx.store.keys)
    return Response(render_metrics(snapshot, workers), media_type=CONTENT_TYPE_LATEST)
