"""Real processes for the fault tests: Redis with AOF, Celery workers, uvicorn.

Every helper picks a free loopback port, writes its output to a log file in the
test's temporary folder (printed when a test fails), and waits for readiness
with a deadline, never forever.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import redis

from shared.webhook_signature import generate_secret

REPO_ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate: Callable[[], object], timeout_s: float, what: str, interval_s: float = 0.05):
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            value = predicate()
        except Exception:  # noqa: BLE001 - a service that is still starting raises
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(interval_s)


class RedisServer:
    """``redis-server`` on loopback with AOF (fsync always), restartable on the same port and data."""

    def __init__(self, workdir: Path, *, aof: bool = True) -> None:
        self.dir = workdir / "redis"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.aof = aof
        self.proc: subprocess.Popen | None = None
        self.log = workdir / "redis.log"

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        args = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir),
                "--save", "", "--logfile", str(self.log)]
        if self.aof:
            args += ["--appendonly", "yes", "--appendfsync", "always"]
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL)
        client = redis.Redis(port=self.port, socket_connect_timeout=0.5)
        wait_until(lambda: client.ping(), 10, "redis-server")
        # Redis refuses commands while it replays the AOF; wait until it accepts them.
        wait_until(lambda: client.info("persistence").get("loading") == 0, 30, "redis AOF load")
        client.close()
        return self

    def kill(self) -> None:
        """Stop abruptly (SIGKILL): only what AOF has fsynced survives."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)
            self.proc = None

    def restart(self, down_s: float = 0.0) -> None:
        self.kill()
        time.sleep(down_s)
        self.start()

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
            self.proc = None


def generated_secrets() -> dict[str, str]:
    """Fresh deployment secrets (services refuse to start without them)."""
    return {"SYNCHUMAN_WEBHOOKS__SECRET": generate_secret(32), "SYNCHUMAN_STORAGE__SIGNING_SECRET": secrets.token_hex(32)}


def service_env(redis_url: str, storage_dir: Path, **extra: str) -> dict[str, str]:
    """Environment of a service process: loopback Redis, local storage, fast recovery knobs."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYNCHUMAN_")}
    env.update(
        {
            "PYTHONPATH": str(REPO_ROOT),
            "PYTHONUNBUFFERED": "1",
            "SYNCHUMAN_REDIS__URL": redis_url,
            "SYNCHUMAN_STORAGE__LOCAL_DIR": str(storage_dir),
            "SYNCHUMAN_WORKER__VISIBILITY_TIMEOUT_S": "6",
            "SYNCHUMAN_WORKER__UNACKED_RESTORE_INTERVAL_S": "1",
            "SYNCHUMAN_WORKER__HEARTBEAT_INTERVAL_S": "0.5",
            **generated_secrets(),
        }
    )
    env.update(extra)
    return env


class ServiceProcess:
    """One subprocess with its log; stopped with a signal and a deadline."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], workdir: Path) -> None:
        self.name = name
        self.args = args
        self.env = env
        self.log = workdir / f"{name}.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> ServiceProcess:
        handle = self.log.open("ab")
        self.proc = subprocess.Popen(
            self.args, env=self.env, cwd=REPO_ROOT, stdout=handle, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        handle.close()
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def signal(self, sig: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)

    def wait(self, timeout_s: float) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout_s)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def celery_worker(name: str, env: dict[str, str], workdir: Path) -> ServiceProcess:
    args = [sys.executable, "-m", "celery", "-A", "worker.celery_app", "worker", "-P", "solo",
            "-Q", "gpu,webhooks", "-n", f"{name}@%h", "--without-mingle", "--without-gossip",
            "--without-heartbeat", "--loglevel", "INFO"]
    return ServiceProcess(name, args, env, workdir)


GUARDED_HTTP = "api.connection_guard:GuardedHttpProtocol"
"""The HTTP protocol every deployment of the API runs with (connection limits)."""


def uvicorn_api(name: str, env: dict[str, str], workdir: Path, port: int) -> ServiceProcess:
    args = [sys.executable, "-m", "uvicorn", "api.app:create_app", "--factory", "--host", "127.0.0.1",
            "--port", str(port), "--no-access-log", "--timeout-graceful-shutdown", "20", "--http", GUARDED_HTTP]
    return ServiceProcess(name, args, env, workdir)


def probe_healthz(prober: httpx.Client, seconds: float) -> list[float]:
    """Latencies (ms) of ``GET /healthz`` sent one after another for ``seconds``."""
    latencies_ms = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        started = time.perf_counter()
        assert prober.get("/healthz").status_code == 200
        latencies_ms.append((time.perf_counter() - started) * 1000)
        time.sleep(0.01)
    return latencies_ms


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (Linux /proc), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_bytes(pid: int) -> int:
    """Resident memory of a process (Linux /proc), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


class SeaweedS3:
    """``weed mini`` with signature-checked S3 on loopback; stoppable and restartable on the same ports."""

    ACCESS_KEY = "hardening"
    SECRET_KEY = "hardening-secret"

    def __init__(self, workdir: Path) -> None:
        import json

        self.dir = workdir / "seaweedfs"
        self.dir.mkdir(parents=True, exist_ok=True)
        config = self.dir / "s3.json"
        config.write_text(json.dumps({"identities": [{
            "name": "service",
            "credentials": [{"accessKey": self.ACCESS_KEY, "secretKey": self.SECRET_KEY}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
        }]}))
        ports = {name: free_port() for name in ("master", "volume", "filer", "s3")}
        self.args = ["weed", "mini", f"-dir={self.dir / 'data'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
                     "-master.telemetry=false", f"-s3.config={config}", "-admin.ui=false", "-webdav=false"]
        for name, port in ports.items():
            self.args += [f"-{name}.port={port}", f"-{name}.port.grpc={free_port()}"]
        self.endpoint = f"http://127.0.0.1:{ports['s3']}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> SeaweedS3:
        import httpx

        handle = (self.dir / "weed.log").open("ab")
        self.proc = subprocess.Popen(self.args, stdout=handle, stderr=subprocess.STDOUT, cwd=self.dir,
                                     stdin=subprocess.DEVNULL)
        handle.close()
        wait_until(lambda: httpx.get(self.endpoint, timeout=1).status_code in (200, 403), 90,
                   "SeaweedFS S3", interval_s=0.3)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(15)
        self.proc = None

    def storage_env(self, bucket: str) -> dict[str, str]:
        return {
            "SYNCHUMAN_STORAGE__BACKEND": "s3",
            "SYNCHUMAN_STORAGE__S3_ENDPOINT": self.endpoint,
            "SYNCHUMAN_STORAGE__S3_BUCKET": bucket,
            "SYNCHUMAN_STORAGE__S3_ACCESS_KEY": self.ACCESS_KEY,
            "SYNCHUMAN_STORAGE__S3_SECRET_KEY": self.SECRET_KEY,
        }


FAULT_FACTORY = "tests.hardening.fault_pipelines:load_fault_pipelines"


class Stack:
    """Redis (AOF), one uvicorn API and any number of workers on the fault-injection pipelines."""

    def __init__(self, workdir: Path, redis_server: RedisServer, **env: str) -> None:
        self.workdir = workdir
        self.redis = redis_server
        self.prefix = f"h{free_port()}"
        self.port = free_port()
        self.api_url = f"http://127.0.0.1:{self.port}"
        self.env = service_env(
            redis_server.url, workdir / "storage",
            SYNCHUMAN_REDIS__KEY_PREFIX=self.prefix,
            SYNCHUMAN_STORAGE__PUBLIC_BASE_URL=self.api_url,
            **{"SYNCHUMAN_WORKER__PIPELINE_FACTORY": FAULT_FACTORY, **env},
        )
        self.api: ServiceProcess | None = None
        self.workers: list[ServiceProcess] = []
        self._names = 0

    def start_api(self) -> Stack:
        import httpx

        self.api = uvicorn_api(f"api-{self.prefix}", self.env, self.workdir, self.port).start()
        wait_until(lambda: httpx.get(f"{self.api_url}/healthz", timeout=1).status_code == 200, 30, "the API")
        return self

    def start_worker(self, **env: str) -> ServiceProcess:
        self._names += 1
        worker = celery_worker(f"worker{self._names}-{self.prefix}", {**self.env, **env}, self.workdir).start()
        self.workers.append(worker)
        return worker

    def wait_warm(self, count: int = 1, timeout_s: float = 90) -> None:
        from shared.heartbeat import list_workers
        from shared.job_store import JobKeys

        client = redis.Redis.from_url(self.redis.url)
        try:
            wait_until(lambda: sum(w.is_warm for w in list_workers(client, JobKeys(self.prefix))) >= count,
                       timeout_s, f"{count} warm worker(s)", interval_s=0.2)
        finally:
            client.close()

    def submit(self, *, steps: int | None = None, token: str | None = None, expect: int = 202) -> str:
        return self.submit_options({"stage1_steps": steps} if steps is not None else {}, token=token, expect=expect)

    def submit_options(self, options: dict, *, token: str | None = None, expect: int = 202) -> str:
        import json

        import httpx

        from tests.hardening.fault_pipelines import tiny_person_png

        headers = {"Authorization": f"Bearer {token}"} if token else {}
        response = httpx.post(
            f"{self.api_url}/v1/jobs", headers=headers, timeout=30,
            files={"image": ("person.png", tiny_person_png(), "image/png")},
            data={"options": json.dumps(options)},
        )
        assert response.status_code == expect, response.text
        return response.json()["id"] if expect == 202 else ""

    def record(self, job_id: str):
        from shared.job_store import JobStore

        client = redis.Redis.from_url(self.redis.url)
        try:
            return JobStore(client, prefix=self.prefix, retention_s=3600).get(job_id)
        finally:
            client.close()

    def failures_counted(self) -> dict[str, int]:
        """``/metrics``' failures by code, as the job store counted them."""
        client = redis.Redis.from_url(self.redis.url)
        try:
            raw = client.hgetall(f"{self.prefix}:metrics:failures")
        finally:
            client.close()
        return {k.decode(): int(v) for k, v in raw.items()}

    def wait_status(self, job_id: str, statuses: set[str], timeout_s: float = 60):
        def reached():
            record = self.record(job_id)
            return record if record.status.value in statuses else None

        return wait_until(reached, timeout_s, f"job {job_id} to reach {sorted(statuses)}", interval_s=0.1)

    def wait_terminal(self, job_id: str, timeout_s: float = 60):
        return self.wait_status(job_id, {"succeeded", "failed", "canceled"}, timeout_s)

    def stop(self) -> None:
        for worker in self.workers:
            worker.stop()
        if self.api is not None:
            self.api.stop()

    def logs(self) -> str:
        parts = [f"--- {p.name} ---\n{p.output()[-4000:]}" for p in [self.api, *self.workers] if p is not None]
        return "\n".join(parts)
