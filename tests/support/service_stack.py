"""Stacks of real servers for the tests that go through the service: uvicorn and Celery workers
on the session's redis-server and SeaweedFS (fixtures ``redis_url`` and ``s3_server``).

Everything listens on loopback, on ports picked at run time.  Each stack (API +
workers) uses its own key prefix on the one Redis, so stacks never see each
other's jobs.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx

from client.stack import SeaweedS3, ServiceProcess, ServiceStack, wait_until, worker_process
from client.stack import service_env as stack_env

FAST_OPTIONS = {"texture_size": 512, "simplify": 0.95}
"""Options that keep preview jobs short on a CPU-only test machine."""
MESH_PREVIEWS = {"stage2/thumbnail.png", "stage2/turntable.mp4", "stage2/turntable.webp"}
"""Artifacts every job that made a mesh has, beside the GLB."""
MAX_UPLOAD_BYTES = 3_000_000
MAX_PIXELS = 4_000_000
WEBHOOK_SECRET = "whsec_d2ViaG9vay10ZXN0LXNlY3JldA=="


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
    """``s3``'s settings (``SeaweedS3.storage_env``) in the ``storage`` form of :func:`service_env`."""
    prefix = "SYNCHUMAN_STORAGE__"
    return {name.removeprefix(prefix).lower(): value for name, value in s3.storage_env(bucket).items()}


def poll_until_finished(api_url: str, job_id: str, timeout: float = 240) -> tuple[dict, list[dict]]:
    """Poll ``GET /v1/jobs/{id}`` until the job ends: its last answer, and every answer seen."""
    seen: list[dict] = []

    def finished():
        job = httpx.get(f"{api_url}/v1/jobs/{job_id}", timeout=10).json()
        seen.append(job)
        return job if job["status"] in ("succeeded", "failed", "canceled") else None

    return wait_until(finished, timeout, f"job {job_id} to finish", interval=0.2), seen


class Stack(ServiceStack):
    """The API and preview workers of one test, with the environment ``env`` (:func:`service_env`: its key
    prefix and storage) and their log files in ``workdir``; worker ``NAME`` logs to ``worker-NAME.log``."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        super().__init__(logs, env["SYNCHUMAN_REDIS__URL"], prefix=env["SYNCHUMAN_REDIS__KEY_PREFIX"])
        env["SYNCHUMAN_STORAGE__PUBLIC_BASE_URL"] = self.api_url
        self.env = env

    def start_api(self) -> Stack:
        super().start_api("--log-level", "warning")
        return self

    def start_worker(self, name: str = "w1", **settings: str) -> ServiceProcess:
        worker = worker_process(f"worker-{name}", {**self.env, **settings}, self.workdir).start()
        self.workers.append(worker)
        return worker


@dataclass
class LocalWebServer:
    """A loopback HTTP server: serves a photo, redirects, and records webhook calls."""

    photo: bytes
    port: int = 0
    hooks: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    _httpd: ThreadingHTTPServer | None = None

    def url(self, path: str, host: str = "localhost") -> str:
        return f"http://{host}:{self.port}{path}"

    def start(self) -> LocalWebServer:
        state = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                if self.path == "/photo.png":
                    self.send_response(200)
                    self.send_header("Content-Type", "image/png")
                    self.send_header("Content-Length", str(len(state.photo)))
                    self.end_headers()
                    self.wfile.write(state.photo)
                elif self.path == "/redirect-to-loopback":
                    self.send_response(302)
                    self.send_header("Location", f"http://127.0.0.1:{state.port}/photo.png")
                    self.end_headers()
                else:
                    self.send_response(404)
                    self.end_headers()

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                state.hooks.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(204)
                self.end_headers()

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self._httpd.server_address[1]
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
