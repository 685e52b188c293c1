"""One typed settings object for every process of the service.

Values come from the environment with the prefix ``SYNCHUMAN_`` and ``__``
between a group and its field, e.g. ``SYNCHUMAN_STORAGE__BACKEND=s3`` or
``SYNCHUMAN_WORKER__PIPELINE=synchuman``.  The defaults describe the embedded
stack (one machine, local disk, the CPU preview pipeline), so nothing has to be
set for a first run.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class RedisSettings(BaseModel):
    url: str = "redis://127.0.0.1:6379/0"
    """Job store and Celery broker (the same server; AOF persistence recommended)."""
    key_prefix: str = "synchuman"
    """Prefix of every key the job store writes, so one Redis can hold several deployments."""


class StorageSettings(BaseModel):
    backend: Literal["local", "s3"] = "local"
    local_dir: Path = Path("var/storage")
    """Root of the local backend (shared by the API and the worker on one machine)."""
    url_ttl_s: int = Field(3600, ge=60, le=7 * 24 * 3600)
    """Lifetime of every download URL handed out."""
    signing_secret: str | None = None
    """HMAC key of the local backend's download URLs.  No default: every process of a deployment
    with the local backend refuses to start without it (``shared.deployment_secrets``)."""
    public_base_url: str = "http://127.0.0.1:8000"
    """Base the API's own download URLs (local backend) start with."""
    s3_endpoint: str = "http://127.0.0.1:8333"
    """Where the API and the workers reach S3 (inside the deployment's network)."""
    s3_public_endpoint: str | None = None
    """Where clients reach S3; presigned URLs are signed for this host (defaults to s3_endpoint)."""
    s3_bucket: str = "synchuman"
    s3_region: str = "us-east-1"
    s3_access_key: str = "synchuman"
    s3_secret_key: str = "synchuman-secret"
    s3_retention_days: int = Field(7, ge=1)
    """Lifecycle rule applied to ``jobs/`` when the bucket is set up."""
    s3_connect_timeout_s: float = Field(3.0, gt=0)
    """Longest wait for a TCP connection to S3."""
    s3_read_timeout_s: float = Field(20.0, gt=0)
    """Longest wait for the next byte of an S3 answer (a hung store fails the call after this)."""


class ApiSettings(BaseModel):
    max_upload_bytes: int = Field(20 * 1024 * 1024, ge=1024)
    max_pixels: int = Field(40_000_000, ge=64 * 64)
    """Largest width * height decoded; larger images are refused before decoding."""
    min_side: int = Field(64, ge=1)
    url_fetch_timeout_s: float = Field(10.0, gt=0)
    url_fetch_allow_hosts: list[str] = []
    """Hosts or networks (CIDR) ``image_url`` may reach even though they are private/loopback."""
    url_fetch_max_redirects: int = Field(3, ge=0, le=10)
    idempotency_ttl_s: int = Field(24 * 3600, ge=60)
    """How long an ``Idempotency-Key`` maps to its job."""
    generate_timeout_s: float = Field(600.0, gt=0)
    """How long the synchronous ``POST /generate`` waits before answering 504 with the job id."""
    fast_job_reads: bool = True
    """Answer ``GET /v1/jobs/{id}`` ahead of FastAPI's routing (``api.fast_reads``; same bytes)."""
    max_connections: int = Field(10_000, ge=1)
    """Open client connections per API process (also kept below its open-files limit); at the cap a
    new connection replaces the one waiting longest without a request (``api.connection_guard``)."""
    header_timeout_s: float = Field(10.0, gt=0)
    """A request's line and headers must arrive within this time, else the connection is closed."""
    body_timeout_s: float = Field(30.0, gt=0)
    """Longest pause of a client while it sends a request body, else the connection is closed."""
    storage_deadline_s: float = Field(3.0, gt=0)
    """Overall limit of the storage calls one request makes (the photo upload, the readiness probe),
    retries included: a hung store answers ``503 storage_unavailable`` (or not ready) within it."""
    events_interval_s: float = Field(0.25, gt=0)
    """How often a ``/v1/jobs/{id}/events`` stream reads its job: at most one event per interval."""
    events_max_s: float = Field(600.0, gt=0)
    """A stream whose job has not finished closes after this long; clients reconnect (``Last-Event-ID``)."""


class WorkerSettings(BaseModel):
    pipeline: Literal["preview", "synchuman"] = "preview"
    weights_dir: Path | None = None
    device: str = "cpu"
    dtype: str | None = None
    compile: bool = True
    """On CUDA, compile the stage-1 network and VAE decoder at worker start (stage 1 about 25 %
    faster on an H100).  Ignored on the CPU."""
    compile_ahead_of_time: bool = False
    """Experimental, off: compile into AOTInductor packages kept in ``compile_cache_dir``, built on the
    first start and loaded on later ones (``pipelines.synchuman.aot_package``).  On an H200 with torch
    2.11 the full-size network's build took 232 s and the worker then crashed (SIGSEGV) loading it, so
    workers ``torch.compile`` in each process, whose Dynamo tracing repeats on every start."""
    compile_cache_dir: Path | None = None
    """Where the packages are kept; default ``$TORCHINDUCTOR_CACHE_DIR/synchuman-aot`` (in the image,
    ``/cache/inductor/synchuman-aot`` on the compile-cache volume)."""
    segmenter: Literal["mediapipe", "onnx"] = "mediapipe"
    """Person segmentation of opaque photos: ``mediapipe`` (CPU, bundled with the ``segment`` extra) or
    ``onnx``, a rembg-compatible model file (``segmenter_model``) run with onnxruntime, on CUDA if present."""
    segmenter_model: Path = Path("u2net.onnx")
    """The ``onnx`` segmenter's file: relative to ``weights_dir``, or an absolute path."""
    pipeline_factory: str | None = None
    """Operator/testing hook: ``module:function`` returning ``GenerationPipelines``; overrides ``pipeline``."""
    max_attempts: int = Field(2, ge=1)
    """Starts of one job before it is marked failed (a job that kills its worker twice fails)."""
    visibility_timeout_s: int = Field(2 * 3600, ge=1)
    """Redis broker redelivery delay for unacknowledged jobs; above the longest job.  The last resort:
    a dead worker's job is recovered from its missed heartbeats long before (``recovery_interval_s``)."""
    unacked_restore_interval_s: int = Field(10, ge=1)
    heartbeat_interval_s: float = Field(5.0, gt=0)
    heartbeat_ttl_s: int = Field(20, ge=2)
    """A worker silent this long is dead: no longer counted, and its running job is recovered."""
    recovery_interval_s: float = Field(5.0, gt=0)
    """How often the API looks for running jobs whose worker's heartbeat expired (``api.recovery``)."""
    redis_retry_s: float = Field(120.0, ge=0)
    """How long a worker retries a job's status write while Redis is unreachable; past it the job
    fails as ``queue_unavailable`` (retryable) or, if even that cannot be written, is recovered."""
    workers_per_gpu: int = Field(1, ge=1)
    """Worker processes sharing one GPU (compose runs ``SYNCHUMAN_WORKERS_PER_GPU`` replicas and passes the
    same number here): while one runs a job's CPU-bound export, another runs the next job's GPU stages.
    Sizes ``export_threads`` by default, and above 1 the workers take turns at the GPU (``gpu_turns``)."""
    gpu_turns: bool | None = None
    """One worker at a time runs GPU stages (stage 1 until its job's export starts), the others wait,
    so an export always overlaps another job's GPU stages and no two jobs share the GPU at half speed
    (``worker.gpu_turns``).  Unset: on when ``workers_per_gpu`` is above 1.  The lock file lives in
    ``compile_cache_dir``, which the workers of one host must share (compose's compile-cache volume)."""
    export_threads: int | None = Field(None, ge=1)
    """CPU threads one job's export may use (torch's intra-op pool and the export's parallel queries;
    ``pipelines.export.threads``).  Unset: torch's own pool size (the physical cores the process may
    run on, or ``OMP_NUM_THREADS``) divided by ``workers_per_gpu``, so the exports of the workers
    sharing a GPU split the host's cores, and a single worker keeps torch's default."""


class RetrySchedule(BaseModel):
    """Exponential backoff with jitter: retry n waits ``first_retry_s * backoff_factor ** (n - 1)``, capped."""

    first_retry_s: float = Field(5.0, ge=0)
    backoff_factor: float = Field(5.0, ge=1)
    max_retry_s: float = Field(24 * 3600, gt=0)
    max_retries: int = Field(9, ge=0)
    """Retries after the first attempt."""
    jitter: float = Field(0.2, ge=0, lt=1)
    """Each delay is multiplied by a random factor in [1 - jitter, 1 + jitter]."""


class WebhookSettings(RetrySchedule):
    """Signed job webhooks (``shared.webhooks``): secret, timeout, retry schedule, allowlist.

    Retries: 5 s up to 24 h apart, about 3 days in all (``max_retries`` 9).
    """

    secret: str | None = None
    """``whsec_<base64 key>`` signing every call (Standard Webhooks).  No default: the API and the
    workers refuse to start without it (``shared.deployment_secrets``)."""
    timeout_s: float = Field(15.0, gt=0, le=30)
    allow_hosts: list[str] = []
    """Hosts or networks (CIDR) ``webhook_url`` may reach even though they are private/loopback."""


class DeliverySettings(RetrySchedule):
    """Uploads of artifacts to the caller's presigned URLs (``deliver_to``, ``shared.deliveries``).

    The URLs follow ``image_url``'s rules (``api.url_fetch_allow_hosts``).  Retries: 5 s, 25 s,
    2 min 5 s, 10 min 25 s, 52 min (``max_retries`` 5): presigned URLs expire within hours.
    """

    max_retries: int = Field(5, ge=0)
    max_retry_s: float = Field(3600.0, gt=0)
    timeout_s: float = Field(300.0, gt=0)
    """Time limit of one upload."""
    max_bytes: int = Field(1024**3, ge=1)
    """Larger artifacts are not uploaded (their delivery fails with ``too_large``)."""


class JobSettings(BaseModel):
    retention_s: int = Field(7 * 24 * 3600, ge=60)
    """How long a finished job's record is kept in Redis."""
    default_job_s: float = Field(60.0, gt=0)
    """Assumed duration of one job for ETAs until real durations are known."""


class AuthSettings(BaseModel):
    enabled: bool = False
    """Require ``Authorization: Bearer <key>`` on ``/v1`` (off for the embedded stack, on in compose)."""
    metrics_token: SecretStr | None = None
    """With ``enabled``, the one bearer token that reads ``/metrics`` (the scraper's): API keys
    cannot, since the numbers cover every tenant.  Unset: ``/metrics`` is closed."""


class LimitSettings(BaseModel):
    """Per-key limits (only with auth on) and the global queue cap (always)."""

    submit_rate_per_s: float = Field(1.0, ge=0)
    """Sustained submissions per second and key (0: no rate limit)."""
    submit_burst: int = Field(30, ge=1)
    max_in_flight: int = Field(20, ge=0)
    """Queued + running jobs per key (0: unlimited)."""
    max_queue_length: int = Field(1000, ge=0)
    """Queued jobs in the whole deployment; more get 503 (0: unbounded)."""


class CorsSettings(BaseModel):
    allow_origins: list[str] = []
    """Browser origins allowed to call the API; empty: CORS off."""


class WatchdogSettings(BaseModel):
    """Per-stage time limits enforced by the worker's watchdog (0: unlimited)."""

    preprocess_s: float = Field(300.0, ge=0)
    stage1_s: float = Field(1800.0, ge=0)
    stage2_s: float = Field(1800.0, ge=0)
    export_s: float = Field(600.0, ge=0)
    upload_s: float = Field(900.0, ge=0)


class StorageRetrySettings(BaseModel):
    """Retries of storage writes before a job fails with ``storage_unavailable``."""

    attempts: int = Field(4, ge=1)
    first_delay_s: float = Field(0.5, ge=0)
    max_delay_s: float = Field(8.0, ge=0)
    deadline_s: float = Field(180.0, gt=0)
    """Overall limit of one storage operation in a worker, retries included (the API uses
    ``api.storage_deadline_s``); past it the operation fails with ``storage_unavailable``."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="SYNCHUMAN_", env_nested_delimiter="__", extra="ignore"
    )

    redis: RedisSettings = RedisSettings()
    storage: StorageSettings = StorageSettings()
    api: ApiSettings = ApiSettings()
    worker: WorkerSettings = WorkerSettings()
    jobs: JobSettings = JobSettings()
    webhooks: WebhookSettings = WebhookSettings()
    deliveries: DeliverySettings = DeliverySettings()
    auth: AuthSettings = AuthSettings()
    limits: LimitSettings = LimitSettings()
    cors: CorsSettings = CorsSettings()
    watchdog: WatchdogSettings = WatchdogSettings()
    storage_retry: StorageRetrySettings = StorageRetrySettings()


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read once from the environment."""
    return Settings()
