"""``synchuman up`` stops its whole stack on SIGTERM and SIGINT: no process is left behind.

The real command in a subprocess, as systemd, Docker or a supervisor runs it;
the signal goes to the launcher only (not to its process group), and every
process the stack started must be gone when the launcher exits.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from client.stack import REPO_ROOT, free_port, wait_until

pytestmark = pytest.mark.slow


def descendants(pid: int) -> set[int]:
    """Every living process below ``pid`` (Linux /proc)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # exited meanwhile
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_up_stops_every_process_it_started(tmp_path, sig):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYNCHUMAN_")}
    env["PYTHONPATH"] = str(REPO_ROOT)
    log = (tmp_path / "up.log").open("wb")
    up = subprocess.Popen([sys.executable, "-m", "client.cli", "up", "--port", str(port), "--state-dir",
                           str(tmp_path / "var")], env=env, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT,
                          stdin=subprocess.DEVNULL)
    log.close()
    started: set[int] = set()
    try:
        wait_until(lambda: httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200, 300,
                   "the embedded stack to be ready", interval=0.5, errors=(httpx.HTTPError,))
        started = descendants(up.pid)
        assert len(started) >= 3, started  # redis-server, uvicorn, the Celery worker

        up.send_signal(sig)
        assert up.wait(90) in (0, 130)
        left = {pid for pid in started if alive(pid)}
        assert not left, f"still running after {sig.name}: {left}\n{(tmp_path / 'up.log').read_text()[-3000:]}"
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
    finally:
        if up.poll() is None:
            up.kill()
            up.wait(10)
        for pid in started:  # never leave a stray process on the machine, even when the test fails
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
