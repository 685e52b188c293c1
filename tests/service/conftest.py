"""Real servers for the service tests: redis-server, SeaweedFS, uvicorn, Celery workers.

Everything listens on loopback, on ports picked at run time.  Redis and
SeaweedFS start once per session; each stack (API + worker) uses its own key
prefix on the one Redis, so stacks never see each other's jobs.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from client.stack import (
    RedisServer,
    SeaweedS3,
    ServiceProcess,
    answers_http,
    api_process,
    free_port,
    wait_until,
    worker_process,
)
from client.stack import service_env as stack_env

FAST_OPTIONS = {"texture_size": 512, "simplify": 0.95}
"""Options that keep preview jobs short on a CPU-only test machine."""
MESH_PREVIEWS = {"stage2/thumbnail.png", "stage2/turntable.mp4", "stage2/turntable.webp"}
"""Artifacts every job that made a mesh has, beside the GLB."""
MAX_UPLOAD_BYTES = 3_000_000
MAX_PIXELS = 4_000_000
WEBHOOK_SECRET = "whsec_d2ViaG9vay10ZXN0LXNlY3JldA=="


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory) -> Iterator[str]:
    server = RedisServer(tmp_path_factory.mktemp("redis"), aof=False).start()
    yield server.url
    server.stop()


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory) -> Iterator[SeaweedS3]:
    server = SeaweedS3(tmp_path_factory.mktemp("seaweedfs")).start()
    yield server
    server.stop()


def service_env(redis_url: str, prefix: str, *, storage: dict[str, str], extra: dict[str, str] | None = None) -> dict[str, str]:
    """Environment of one stack's processes (API and workers)."""
    settings = {
        "SYNCHUMAN_REDIS__KEY_PREFIX": prefix,
        "SYNCHUMAN_WORKER__HEARTBEAT_INTERVAL_S": "1",
        "SYNCHUMAN_WORKER__HEARTBEAT_TTL_S": "5",
        **{f"SYNCHUMAN_STORAGE__{k.upper()}": v for k, v in storage.items()},
    }
    return stack_env(redis_url, **{**settings, **(extra or {})})


def s3_storage_env(s3: SeaweedS3, bucket: str) -> dict[str, str]:
    return {
        "backend": "s3",
        "s3_endpoint": s3.endpoint,
        "s3_bucket": bucket,
        "s3_access_key": s3.ACCESS_KEY,
        "s3_secret_key": s3.SECRET_KEY,
    }


@dataclass
class Stack:
    """One API process plus its workers, sharing a Redis key prefix and a storage backend."""

    env: dict[str, str]
    logs: Path
    api_url: str = ""
    api: ServiceProcess | None = None
    workers: list[ServiceProcess] = field(default_factory=list)

    @property
    def prefix(self) -> str:
        return self.env["SYNCHUMAN_REDIS__KEY_PREFIX"]

    def start_api(self) -> None:
        port = free_port()
        self.api_url = f"http://127.0.0.1:{port}"
        self.env["SYNCHUMAN_STORAGE__PUBLIC_BASE_URL"] = self.api_url
        self.api = api_process("api", self.env, self.logs, port, "--log-level", "warning").start()
        wait_until(lambda: answers_http(f"{self.api_url}/healthz"), 30, "the API to answer")

    def start_worker(self, name: str = "w1") -> ServiceProcess:
        worker = worker_process(f"worker-{name}", self.env, self.logs).start()
        self.workers.append(worker)
        return worker

    def wait_ready(self, timeout: float = 120) -> None:
        def ready() -> bool:
            for worker in self.workers:
                worker.check_alive()
            return answers_http(f"{self.api_url}/readyz")

        wait_until(ready, timeout, "/readyz to report a warm worker", interval=0.3)

    def stop(self) -> None:
        for worker in self.workers:
            worker.stop()
        if self.api is not None:
            self.api.stop()


@pytest.fixture(scope="session")
def s3_stack(redis_url, s3_server, tmp_path_factory) -> Iterator[Stack]:
    """The API and one preview worker on the S3 backend (SeaweedFS)."""
    logs = tmp_path_factory.mktemp("s3-stack-logs")
    limits = {
        "SYNCHUMAN_API__MAX_UPLOAD_BYTES": str(MAX_UPLOAD_BYTES),
        "SYNCHUMAN_API__MAX_PIXELS": str(MAX_PIXELS),
        "SYNCHUMAN_API__URL_FETCH_ALLOW_HOSTS": '["localhost"]',
        "SYNCHUMAN_WEBHOOKS__SECRET": WEBHOOK_SECRET,
        "SYNCHUMAN_WEBHOOKS__MAX_RETRIES": "1",
        "SYNCHUMAN_WEBHOOKS__ALLOW_HOSTS": '["localhost"]',
    }
    env = service_env(redis_url, "e2e", storage=s3_storage_env(s3_server, "e2e-artifacts"), extra=limits)
    stack = Stack(env=env, logs=logs)
    try:
        stack.start_api()
        stack.start_worker()
        stack.wait_ready()
        yield stack
    finally:
        stack.stop()


@pytest.fixture(scope="session")
def sample_photo(sample_photos) -> Path:
    return sample_photos[0]


@dataclass
class LocalWebServer:
    """A loopback HTTP server: serves a photo, redirects, and records webhook calls."""

    port: int
    photo: bytes
    hooks: list[tuple[dict[str, str], bytes]] = field(default_factory=list)

    def url(self, path: str, host: str = "localhost") -> str:
        return f"http://{host}:{self.port}{path}"


@pytest.fixture(scope="session")
def web_server(sample_photo) -> Iterator[LocalWebServer]:
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    server_state = LocalWebServer(port=0, photo=sample_photo.read_bytes())

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_: object) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            if self.path == "/photo.png":
                self.send_response(200)
                self.send_header("Content-Type", "image/png")
                self.send_header("Content-Length", str(len(server_state.photo)))
                self.end_headers()
                self.wfile.write(server_state.photo)
            elif self.path == "/redirect-to-loopback":
                self.send_response(302)
                self.send_header("Location", f"http://127.0.0.1:{server_state.port}/photo.png")
                self.end_headers()
            else:
                self.send_response(404)
                self.end_headers()

        def do_POST(self) -> None:  # noqa: N802
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            server_state.hooks.append(({k.lower(): v for k, v in self.headers.items()}, body))
            self.send_response(204)
            self.end_headers()

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server_state.port = httpd.server_address[1]
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield server_state
    httpd.shutdown()
