"""One client cannot stall the API: 20,000 half-sent requests, and /healthz keeps answering everyone else.

Real processes: uvicorn with the service's HTTP protocol
(``api.connection_guard``), two hostile client processes holding 10,000
half-sent requests each from another loopback address, and this test as the
other client, probing ``/healthz`` throughout.  Bounded and self-stopping: the
hostile clients close everything and exit after a fixed time.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time

import httpx
import numpy as np
import pytest

from client.stack import REPO_ROOT, wait_until
from tests.support.fault_stack import Stack, cpu_seconds, probe_healthz

pytestmark = pytest.mark.slow

HALF_OPEN = 20_000
CLIENT_PROCESSES = 2
HEADER_TIMEOUT_S = 5
HOLD_S = 12


def open_files(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def test_20000_half_open_connections_leave_healthz_answering(tmp_path, redis_server):
    stack = Stack(tmp_path, redis_server, SYNCHUMAN_API__HEADER_TIMEOUT_S=str(HEADER_TIMEOUT_S))
    hostile: list[subprocess.Popen] = []
    try:
        stack.start_api()
        api = stack.api.pid
        quiet_files, api_cpu_before, test_cpu_before = open_files(api), cpu_seconds(api), time.process_time()
        kept_alive: list[float] = []  # ms, a monitoring client on one kept-alive connection
        fresh: list[float] = []  # ms, a client opening a new connection per request
        most_files = quiet_files
        with httpx.Client(base_url=stack.api_url, timeout=10) as prober:
            quiet = probe_healthz(prober, 2)  # this machine's own noise, before the attack
            for _ in range(CLIENT_PROCESSES):
                hostile.append(subprocess.Popen(
                    [sys.executable, "-m", "tests.api.half_open_client", "--port", str(stack.port),
                     "--count", str(HALF_OPEN // CLIENT_PROCESSES), "--hold-s", str(HOLD_S)],
                    cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True))
            started = time.monotonic()
            while any(p.poll() is None for p in hostile) and time.monotonic() - started < HOLD_S + 60:
                t0 = time.perf_counter()
                assert prober.get("/healthz").status_code == 200
                kept_alive.append((time.perf_counter() - t0) * 1000)
                if len(kept_alive) % 10 == 0:
                    t0 = time.perf_counter()
                    assert httpx.get(f"{stack.api_url}/healthz", timeout=10).status_code == 200
                    fresh.append((time.perf_counter() - t0) * 1000)
                    most_files = max(most_files, open_files(api))
                time.sleep(0.01)
        reports = [json.loads(p.communicate(timeout=60)[0].splitlines()[-1]) for p in hostile]
        sent = sum(r["sent"] for r in reports)
        closed = sum(r["closed_by_server"] for r in reports)

        # The API recovers alone: its descriptors back to where they were, and it answers.
        wait_until(lambda: open_files(api) <= quiet_files + 16, 30, "the API to release the connections")
        assert httpx.get(f"{stack.api_url}/healthz", timeout=5).status_code == 200
        api_cpu, test_cpu = cpu_seconds(api) - api_cpu_before, time.process_time() - test_cpu_before
        p50, p99 = np.percentile(kept_alive, 50), np.percentile(kept_alive, 99)
        print(f"\n{sent} half-sent requests held {HOLD_S} s by {CLIENT_PROCESSES} processes "
              f"(soft open-files limit {resource.getrlimit(resource.RLIMIT_NOFILE)[0]}): "
              f"/healthz kept-alive p50 {p50:.1f} ms, p99 {p99:.1f} ms ({len(kept_alive)} probes); "
              f"new connection p50 {np.percentile(fresh, 50):.1f} ms, p99 {np.percentile(fresh, 99):.1f} ms, "
              f"max {max(fresh):.1f} ms ({len(fresh)} probes); API open files at most {most_files}; "
              f"closed by the server while held: {closed}; CPU: API {api_cpu:.1f} s, prober {test_cpu:.1f} s; "
              f"p99 before the attack {np.percentile(quiet, 99):.1f} ms")
        assert sent >= HALF_OPEN * 0.95, reports
        assert closed >= sent  # evicted at the cap or timed out: none outlives the header timeout
        assert p99 <= 100 + np.percentile(quiet, 99)
    finally:
        for process in hostile:
            if process.poll() is None:
                process.kill()
                process.wait(10)
        stack.stop()
