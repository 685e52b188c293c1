"""Job counters and duration histograms, kept in Redis.

The API may run as several processes and every worker is its own process, so
numbers that Prometheus scrapes from the API live where all of them can add to
them: small Redis hashes, updated with HINCRBY/HINCRBYFLOAT (atomic, and kept
by AOF across restarts).  ``api/metrics.py`` turns a :class:`MetricsSnapshot`
into the Prometheus exposition format.

Layout (``{p}`` is ``redis.key_prefix``)::

    {p}:metrics:jobs_by_status        status -> jobs currently in it (terminal ones: ever)
    {p}:metrics:failures              error code -> failed jobs
    {p}:metrics:webhooks              outcome -> webhook deliveries
    {p}:metrics:hist:{name}:{label}   bucket index -> count, plus 'sum' and 'count'

Histogram buckets are stored per bucket (not cumulated); the reader cumulates.
"""

from __future__ import annotations

import bisect
import functools
import logging
from dataclasses import dataclass, field

import redis
import redis.asyncio as aredis

WAIT_BUCKETS_S = (0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)
"""Upper bounds of the queue-wait histogram (submission -> first start)."""
STAGE_BUCKETS_S = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)
"""Upper bounds of the per-stage run-time histogram."""

HISTOGRAMS = {"wait": WAIT_BUCKETS_S, "stage": STAGE_BUCKETS_S}

log = logging.getLogger("synchuman.metrics")


def _best_effort(method):
    """Metrics never fail a job: a Redis error while counting is logged and dropped."""

    @functools.wraps(method)
    def wrapper(*args, **kwargs):
        try:
            return method(*args, **kwargs)
        except redis.RedisError as exc:
            log.warning("metric not recorded", extra={"metric": method.__name__, "error": type(exc).__name__})
            return None

    return wrapper


class MetricKeys:
    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.jobs_by_status = f"{prefix}:metrics:jobs_by_status"
        self.failures = f"{prefix}:metrics:failures"
        self.webhooks = f"{prefix}:metrics:webhooks"
        self.hist_pattern = f"{prefix}:metrics:hist:*"

    def histogram(self, name: str, label: str) -> str:
        return f"{self.prefix}:metrics:hist:{name}:{label}"


def count_transition(pipe, keys: MetricKeys, old: str | None, new: str, error_code: str | None = None) -> None:
    """Queue the count changes of one job moving ``old`` -> ``new`` on ``pipe``.

    Call it inside the transaction that writes the status change, so the counts
    move exactly when the records do, once per job whoever fails it (worker,
    watchdog, attempt limit).  ``old`` is None for a new job; ``error_code`` is
    the failed job's code.
    """
    if old == new:
        return
    if old is not None:
        pipe.hincrby(keys.jobs_by_status, old, -1)
    pipe.hincrby(keys.jobs_by_status, new, 1)
    if new == "failed" and error_code:
        pipe.hincrby(keys.failures, error_code, 1)


@dataclass
class HistogramData:
    buckets: tuple[float, ...]
    counts: list[int]
    """Per bucket (not cumulative); one extra entry at the end for +Inf."""
    total: float = 0.0
    count: int = 0


@dataclass
class MetricsSnapshot:
    """Everything the metrics endpoint reports that lives in Redis."""

    queue_depth: int = 0
    jobs_by_status: dict[str, int] = field(default_factory=dict)
    failures: dict[str, int] = field(default_factory=dict)
    webhooks: dict[str, int] = field(default_factory=dict)
    histograms: dict[tuple[str, str], HistogramData] = field(default_factory=dict)
    """(histogram name, label) -> data; the wait histogram's label is ``all``."""


class JobMetrics:
    """The writing side, used by workers (and webhook delivery)."""

    def __init__(self, client: redis.Redis, *, prefix: str) -> None:
        self.redis = client
        self.keys = MetricKeys(prefix)

    @_best_effort
    def _observe(self, name: str, label: str, seconds: float) -> None:
        buckets = HISTOGRAMS[name]
        index = bisect.bisect_left(buckets, seconds)
        key = self.keys.histogram(name, label)
        pipe = self.redis.pipeline(transaction=True)
        pipe.hincrby(key, str(index), 1)
        pipe.hincrbyfloat(key, "sum", float(seconds))
        pipe.hincrby(key, "count", 1)
        pipe.execute()

    def observe_wait(self, seconds: float) -> None:
        """Seconds a job waited in the queue before its first start."""
        self._observe("wait", "all", max(seconds, 0.0))

    def observe_stage(self, stage: str, seconds: float) -> None:
        """Seconds one stage of one job ran."""
        self._observe("stage", stage, max(seconds, 0.0))

    @_best_effort
    def count_webhook(self, outcome: str) -> None:
        """``outcome``: ``delivered``, ``retried`` or ``gave_up``."""
        self.redis.hincrby(self.keys.webhooks, outcome, 1)


def _decode_counts(raw: dict) -> dict[str, int]:
    return {
        (k.decode() if isinstance(k, bytes) else k): int(v)
        for k, v in raw.items()
    }


def _histogram(name: str, raw: dict) -> HistogramData:
    buckets = HISTOGRAMS[name]
    values = {(k.decode() if isinstance(k, bytes) else k): v for k, v in raw.items()}
    counts = [int(values.get(str(i), 0)) for i in range(len(buckets) + 1)]
    return HistogramData(
        buckets=buckets, counts=counts, total=float(values.get("sum", 0.0)), count=int(values.get("count", 0))
    )


async def read_snapshot(client: aredis.Redis, *, prefix: str) -> MetricsSnapshot:
    """Read every Redis-side metric in two round trips."""
    keys = MetricKeys(prefix)
    hist_keys = [k async for k in client.scan_iter(match=keys.hist_pattern, count=200)]
    hist_keys = sorted(k.decode() if isinstance(k, bytes) else k for k in hist_keys)
    async with client.pipeline(transaction=False) as pipe:
        pipe.zcard(f"{prefix}:queue")
        pipe.hgetall(keys.jobs_by_status)
        pipe.hgetall(keys.failures)
        pipe.hgetall(keys.webhooks)
        for key in hist_keys:
            pipe.hgetall(key)
        depth, by_status, failures, webhooks, *hists = await pipe.execute()
    snapshot = MetricsSnapshot(
        queue_depth=int(depth),
        jobs_by_status={k: max(v, 0) for k, v in _decode_counts(by_status).items()},
        failures=_decode_counts(failures),
        webhooks=_decode_counts(webhooks),
    )
    base = len(f"{prefix}:metrics:hist:")
    for key, raw in zip(hist_keys, hists, strict=True):
        name, _, label = key[base:].partition(":")
        if name in HISTOGRAMS and raw:
            snapshot.histograms[(name, label)] = _histogram(name, raw)
    return snapshot
