"""Everything a worker process keeps between jobs: settings, stores, warm pipelines.

Built once by the process-start hook in ``worker.celery_app``; the pipelines
are loaded there (never at import time) and stay on the device for the life
of the process.  A heartbeat thread publishes the worker's identity and
state (``shared.heartbeat``) so the API knows a warm worker exists, and which
job it runs (a running job whose worker stops beating is recovered by the API).

The Celery app hands the runtime an ``announce(record, event)`` callable that
queues webhook events; nothing below the app imports it.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import redis

from shared.errors import JobTimeoutError
from shared.heartbeat import WorkerHeartbeat, publish, withdraw
from shared.job_metrics import JobMetrics
from shared.job_store import JobStore
from shared.queue import celery_producer
from shared.settings import Settings, WorkerSettings
from shared.storage import Storage, build_storage
from shared.storage.retrying import RetryingStorage
from worker.attempt import Announce, JobAttempt
from worker.gpu_memory import gpu_memory_bytes
from worker.gpu_turns import GpuTurns, gpu_lock_name
from worker.watchdog import StageWatchdog, stage_limits
from worker.webhooks import announcer

if TYPE_CHECKING:
    from pipelines.base import GenerationPipelines

log = logging.getLogger("synchuman.worker")


@dataclass
class WorkerRuntime:
    settings: Settings
    store: JobStore
    storage: Storage
    pipelines: GenerationPipelines
    heartbeat: WorkerHeartbeat
    announce: Announce
    """Queues a webhook event of a job (the Celery app's, handed down at start)."""
    metrics: JobMetrics | None = None
    watchdog: StageWatchdog | None = None
    """Per-stage time limits (``worker.watchdog``); fails the job with ``timeout`` and recycles the process."""
    gpu_turns: GpuTurns | None = None
    """This worker's turn at a GPU it shares with other workers (``worker.gpu_turns``); None: not shared."""
    shutting_down: threading.Event = field(default_factory=threading.Event)
    """Set on SIGTERM: the running job stops at its next step and is requeued for another worker."""
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)

    @classmethod
    def start(
        cls, settings: Settings, pipelines: GenerationPipelines | None = None, *, announce: Announce | None = None
    ) -> WorkerRuntime:
        """Connect to Redis and storage, load the pipelines, start the heartbeat.

        ``announce`` defaults to queuing events through a producer of its own.
        """
        client = redis.Redis.from_url(settings.redis.url)
        store = JobStore(client, prefix=settings.redis.key_prefix, retention_s=settings.jobs.retention_s)
        storage = RetryingStorage(build_storage(settings.storage), settings.storage_retry)
        worker = settings.worker
        heartbeat = WorkerHeartbeat(
            worker_id=f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}",
            hostname=socket.gethostname(),
            pid=os.getpid(),
            pipeline=worker.pipeline,
            pipeline_version="",
            device=worker.device,
            cuda_visible_devices=os.environ.get("CUDA_VISIBLE_DEVICES"),
            state="loading",
        )
        export_threads = limit_export_threads(worker)
        with _beating(client, store, heartbeat, worker.heartbeat_interval_s, worker.heartbeat_ttl_s):
            pipelines = _load_pipelines(worker, pipelines)
        heartbeat.pipeline = pipelines.name
        heartbeat.pipeline_version = pipelines.version
        heartbeat.device = pipelines.device
        heartbeat.state = "warm"
        runtime = cls(settings=settings, store=store, storage=storage, pipelines=pipelines, heartbeat=heartbeat,
                      announce=announce or announcer(celery_producer(settings)))
        runtime.metrics = JobMetrics(client, prefix=settings.redis.key_prefix)
        runtime.watchdog = StageWatchdog(stage_limits(settings.watchdog), runtime.fail_timed_out).start()
        runtime.gpu_turns = _gpu_turns(worker, pipelines.device)
        runtime.beat()
        runtime._thread = threading.Thread(target=runtime._beat_forever, name="heartbeat", daemon=True)
        runtime._thread.start()
        log.info(
            "worker warm",
            extra={"worker_id": heartbeat.worker_id, "pipeline": pipelines.name, "load_s": pipelines.load_timings,
                   "export_threads": export_threads,
                   "gpu_turns": str(runtime.gpu_turns.lock_path) if runtime.gpu_turns else None},
        )
        return runtime

    @property
    def pipeline_info(self) -> dict[str, str]:
        return {"name": self.pipelines.name, "version": self.pipelines.version, "device": self.pipelines.device}

    def attempt_for(self, job_id: str) -> JobAttempt:
        """This worker's attempt at ``job_id`` (the owner of its status while it runs here)."""
        return JobAttempt(self.store, self.storage, job_id, worker_id=self.heartbeat.worker_id,
                          announce=self.announce, redis_retry_s=self.settings.worker.redis_retry_s)

    def fail_timed_out(self, job_id: str, stage: str, limit_s: float) -> None:
        """The watchdog's ``on_timeout``: the job fails with ``timeout`` (then the process is recycled)."""
        error = JobTimeoutError(f"stage {stage} ran longer than its limit of {limit_s:g} s")
        self.attempt_for(job_id).fail(error, deadline_s=10.0)

    def beat(self) -> None:
        memory = gpu_memory_bytes(self.heartbeat.device)
        if memory is not None:
            self.heartbeat.gpu_memory_allocated_bytes, self.heartbeat.gpu_memory_reserved_bytes = memory
        try:
            publish(self.store.redis, self.store.keys, self.heartbeat, self.settings.worker.heartbeat_ttl_s)
        except redis.RedisError:
            log.warning("heartbeat failed", exc_info=True)

    def set_busy(self, job_id: str | None) -> None:
        self.heartbeat.state = "busy" if job_id else "warm"
        self.heartbeat.current_job = job_id
        self.beat()

    def _beat_forever(self) -> None:
        while not self._stop.wait(self.settings.worker.heartbeat_interval_s):
            self.beat()

    def stop(self) -> None:
        from pipelines.export.threads import clear_export_threads

        clear_export_threads()  # the process's exports are no longer this runtime's to size
        self._stop.set()
        try:
            withdraw(self.store.redis, self.store.keys, self.heartbeat.worker_id)
        except redis.RedisError:
            pass


def limit_export_threads(worker: WorkerSettings) -> int:
    """Give this process's exports their share of the cores (``worker.export_threads``, else torch's
    pool size divided among the ``worker.workers_per_gpu`` processes on one GPU); returns the threads."""
    from pipelines.export.threads import set_export_threads

    return set_export_threads(worker.export_threads, processes=worker.workers_per_gpu)


def _load_pipelines(worker: WorkerSettings, pipelines: GenerationPipelines | None) -> GenerationPipelines:
    """The pipelines the settings name (or ``pipelines`` when given), loaded onto the worker's device."""
    if pipelines is not None:
        return pipelines
    if worker.pipeline_factory:
        from pipelines.registry import load_pipeline_factory

        return load_pipeline_factory(worker.pipeline_factory, device=worker.device)
    from pipelines.registry import load_pipelines

    log.info("loading pipelines", extra={"pipeline": worker.pipeline, "device": worker.device})
    return load_pipelines(worker.pipeline, **pipeline_load_arguments(worker))


def pipeline_load_arguments(worker: WorkerSettings) -> dict:
    """``pipelines.registry.load_pipelines``'s keyword arguments from the worker's settings."""
    return {
        "weights_dir": worker.weights_dir, "device": worker.device, "dtype": worker.dtype,
        "compile": worker.compile, "compile_cache_dir": _compile_cache_dir(worker),
        "segmenter": worker.segmenter, "segmenter_model": worker.segmenter_model,
    }


def _compile_cache_dir(worker: WorkerSettings) -> Path | None:
    """Where compiled networks are kept between starts; None compiles in each process."""
    if not (worker.compile and worker.compile_ahead_of_time):
        return None
    return _shared_cache_dir(worker)


def _shared_cache_dir(worker: WorkerSettings) -> Path:
    """The folder every worker of the host shares: ``compile_cache_dir``, else the default under
    ``TORCHINDUCTOR_CACHE_DIR`` (the compile-cache volume in compose)."""
    if worker.compile_cache_dir is not None:
        return worker.compile_cache_dir
    from pipelines.synchuman.aot_package import default_cache_dir

    return default_cache_dir()


def _gpu_turns(worker: WorkerSettings, device: str) -> GpuTurns | None:
    """The turn-taking lock when workers share the GPU (``gpu_turns``, by default above one worker)."""
    enabled = worker.gpu_turns if worker.gpu_turns is not None else worker.workers_per_gpu > 1
    if not enabled:
        return None
    return GpuTurns(_shared_cache_dir(worker) / f"{gpu_lock_name(device)}.lock")


@contextmanager
def _beating(
    client: redis.Redis, store: JobStore, heartbeat: WorkerHeartbeat, interval_s: float, ttl_s: float
) -> Iterator[None]:
    """Publish ``heartbeat`` every ``interval_s`` while the block runs (the ``loading`` state).

    Loading and compiling the GPU pipelines takes minutes on a first start; the
    worker stays listed (and counted as alive, not warm) all that time.
    """
    stop = threading.Event()

    def beat() -> None:
        while True:
            try:
                publish(client, store.keys, heartbeat, ttl_s)
            except redis.RedisError:
                log.warning("heartbeat failed", exc_info=True)
            if stop.wait(interval_s):
                return

    thread = threading.Thread(target=beat, name="heartbeat-loading", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


_runtime: WorkerRuntime | None = None
_lock = threading.Lock()


def start_runtime(settings: Settings, announce: Announce) -> WorkerRuntime:
    """The process's runtime, started on first call (the process-start hook)."""
    global _runtime
    with _lock:
        if _runtime is None:
            _runtime = WorkerRuntime.start(settings, announce=announce)
        return _runtime


def current_runtime() -> WorkerRuntime:
    if _runtime is None:
        raise RuntimeError("the worker runtime has not been started (process-start hook missing)")
    return _runtime


def stop_runtime() -> None:
    global _runtime
    with _lock:
        if _runtime is not None:
            _runtime.stop()
            _runtime = None
