"""Soak run: many submissions over minutes while workers are killed and Redis restarts.

Starts the real stack on loopback (redis-server with AOF fsync always, one
uvicorn API, ``--workers`` Celery workers with the solo pool) plus a
supervisor that restarts dead workers (what compose's ``restart:`` does), then:

* submits ``--jobs`` photos at an even rate over ``--duration`` seconds from a
  few client threads, honouring 429/503 ``Retry-After`` answers;
* injects a fault every ``--fault-every`` seconds (random): ``kill -9`` of a
  worker (never worker 0, whose memory is tracked) or a SIGKILL + restart of
  Redis (the AOF keeps what was acknowledged);
* waits for every accepted job to finish, then reports (JSON on stdout):

  - ``jobs_lost``: accepted jobs that never reached a terminal state (must be 0);
  - ``jobs_run_twice``: jobs with more than one terminal event in their history
    or more than one "job succeeded" log line across all workers (must be 0);
  - submit latency percentiles of accepted submissions (202), in ms;
  - resident memory of the API and of worker 0 after warm-up and at the end.

``--pipeline preview`` runs the CPU preview model (seconds per job);
``--pipeline quick`` runs a stand-in that returns a tiny result at once, so a
CPU machine can push a thousand jobs through the service in minutes.

    python -m bench.soak --jobs 1000 --duration 300 --pipeline quick
    python -m bench.soak --jobs 40 --duration 240 --pipeline preview --workers 2
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import redis

from shared.job_store import JobStore
from bench.quick_pipelines import tiny_person_png
from client.stack import RedisServer, ServiceStack, wait_until

QUICK_FACTORY = "bench.quick_pipelines:load_quick_pipelines"
PREVIEW_OPTIONS = {"texture_size": 512, "simplify": 0.95}
CLIENT_THREADS = 4


def rss_bytes(pid: int) -> int:
    """Resident memory of a process (Linux /proc), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


class Soak:
    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args = args
        self.redis = RedisServer(workdir, aof=True)
        env = {
            "SYNCHUMAN_WORKER__VISIBILITY_TIMEOUT_S": str(args.visibility),
            "SYNCHUMAN_WORKER__MAX_ATTEMPTS": "3",
            "SYNCHUMAN_LIMITS__MAX_QUEUE_LENGTH": "5000",
        }
        if args.pipeline == "quick":
            env["SYNCHUMAN_WORKER__PIPELINE_FACTORY"] = QUICK_FACTORY
        else:
            env["SYNCHUMAN_WORKER__PIPELINE_FACTORY"] = ""
            env["SYNCHUMAN_WORKER__PIPELINE"] = "preview"
        self.workdir = workdir
        self.env = env
        self.stack: ServiceStack | None = None
        self.slots: list = []
        self.accepted: list[str] = []
        self.latencies_ms: list[float] = []
        self.answers: Counter = Counter()
        self.faults: Counter = Counter()
        self.restarts = 0
        self.lock = threading.Lock()
        self.stop_supervisor = threading.Event()

    # -- processes -------------------------------------------------------

    def start(self) -> None:
        self.redis.start()
        self.stack = ServiceStack(self.workdir, self.redis.url, **self.env).start_api("--timeout-graceful-shutdown", "20")
        self.slots = [self.stack.start_worker() for _ in range(self.args.workers)]
        self.stack.wait_warm(self.args.workers, timeout=180)
        self._warm_up()
        threading.Thread(target=self._supervise, daemon=True).start()

    def _warm_up(self) -> None:
        """Run jobs until every worker has done one (imports and caches in place), uncounted."""
        from shared.heartbeat import list_workers
        from shared.job_store import JobKeys

        client = redis.Redis.from_url(self.redis.url)
        options = {"stage1_steps": 3, **(PREVIEW_OPTIONS if self.args.pipeline == "preview" else {})}
        for _ in range(10 * self.args.workers):
            workers = list_workers(client, JobKeys(self.stack.prefix))
            if len(workers) >= self.args.workers and all(w.jobs_done > 0 for w in workers):
                break
            self.wait_terminal(self.submit(tiny_person_png(), options), timeout_s=300)
        client.close()

    def submit(self, photo: bytes, options: dict) -> str:
        response = self.stack.post_job(photo, options)
        response.raise_for_status()
        return response.json()["id"]

    def wait_terminal(self, job_id: str, timeout_s: float) -> None:
        store = JobStore(redis.Redis.from_url(self.redis.url), prefix=self.stack.prefix, retention_s=3600)
        wait_until(lambda: store.get(job_id).status.is_terminal, timeout_s, f"job {job_id} to finish", interval=0.2)

    def _supervise(self) -> None:
        while not self.stop_supervisor.wait(0.5):
            for i, worker in enumerate(self.slots):
                if not worker.alive():
                    self.slots[i] = self.stack.start_worker()
                    with self.lock:
                        self.restarts += 1

    def inject_faults(self, until: float) -> None:
        rng = random.Random(self.args.seed)
        while time.monotonic() < until:
            time.sleep(self.args.fault_every * rng.uniform(0.7, 1.3))
            if time.monotonic() >= until:
                return
            if rng.random() < 0.5 and len(self.slots) > 1:
                victim = self.slots[rng.randrange(1, len(self.slots))]
                victim.signal(signal.SIGKILL)
                self.faults["worker_kill_9"] += 1
            else:
                self.redis.restart(down_s=1.0)
                self.faults["redis_restart"] += 1

    # -- load ------------------------------------------------------------

    def submit_all(self) -> None:
        args = self.args
        interval = args.duration / args.jobs
        start = time.monotonic()
        photo = tiny_person_png(128)
        options = json.dumps(PREVIEW_OPTIONS if args.pipeline == "preview" else {})
        counter = iter(range(args.jobs))

        def client_loop() -> None:
            with httpx.Client(base_url=self.stack.api_url, timeout=60) as client:
                for n in counter:
                    due = start + n * interval
                    time.sleep(max(0.0, due - time.monotonic()))
                    self._submit_one(client, photo, options)

        threads = [threading.Thread(target=client_loop) for _ in range(CLIENT_THREADS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    def _submit_one(self, client: httpx.Client, photo: bytes, options: str) -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            began = time.perf_counter()
            try:
                response = client.post("/v1/jobs", files={"image": ("p.png", photo, "image/png")},
                                       data={"options": options})
            except httpx.HTTPError:
                with self.lock:
                    self.answers["connection_error"] += 1
                time.sleep(1.0)
                continue
            elapsed_ms = (time.perf_counter() - began) * 1000
            with self.lock:
                self.answers[str(response.status_code)] += 1
            if response.status_code == 202:
                with self.lock:
                    self.accepted.append(response.json()["id"])
                    self.latencies_ms.append(elapsed_ms)
                return
            if response.status_code in (429, 503):
                time.sleep(min(float(response.headers.get("retry-after", "1")), 5.0))
                continue
            raise RuntimeError(f"unexpected answer {response.status_code}: {response.text[:200]}")
        with self.lock:
            self.answers["gave_up"] += 1

    # -- accounting ------------------------------------------------------

    def memory(self) -> dict[str, int]:
        return {"api": rss_bytes(self.stack.api.pid), "worker0": rss_bytes(self.slots[0].pid)}

    def wait_drained(self, timeout_s: float) -> dict:
        store = JobStore(redis.Redis.from_url(self.redis.url), prefix=self.stack.prefix, retention_s=3600)

        def unfinished() -> list[str]:
            left = []
            for job_id in self.accepted:
                try:
                    if not store.get(job_id).status.is_terminal:
                        left.append(job_id)
                except Exception:  # noqa: BLE001 - missing or Redis restarting: not finished
                    left.append(job_id)
            return left

        try:
            wait_until(lambda: not unfinished(), timeout_s, "every accepted job to finish", interval=1.0)
        except TimeoutError:
            pass
        statuses: Counter = Counter()
        twice, lost, attempts = [], [], Counter()
        for job_id in self.accepted:
            try:
                record = store.get(job_id)
            except Exception:  # noqa: BLE001
                lost.append(job_id)
                continue
            statuses[record.status.value] += 1
            attempts[record.attempts] += 1
            if not record.status.is_terminal:
                lost.append(job_id)
            if sum(e.status.is_terminal for e in record.history) > 1:
                twice.append(job_id)
        succeeded_lines: Counter = Counter()
        for log in self.workdir.glob("worker*.log"):
            for line in log.read_text(errors="replace").splitlines():
                if line.startswith("{") and '"job succeeded"' in line:
                    succeeded_lines[json.loads(line).get("job_id")] += 1
        twice += [job for job, n in succeeded_lines.items() if n > 1 and job not in twice]
        return {"statuses": dict(statuses), "attempts": dict(attempts), "lost": lost, "twice": twice}

    def stop(self) -> None:
        self.stop_supervisor.set()
        if self.stack is not None:
            self.stack.stop()
        self.redis.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--duration", type=float, default=300.0, help="seconds over which jobs are submitted")
    parser.add_argument("--pipeline", choices=("quick", "preview"), default="quick")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--fault-every", type=float, default=30.0, help="mean seconds between two faults")
    parser.add_argument("--visibility", type=int, default=20, help="broker visibility timeout (s)")
    parser.add_argument("--drain", type=float, default=120.0, help="seconds to wait for the queue to empty")
    parser.add_argument("--seed", type=int, default=10)
    parser.add_argument("--out", type=Path, help="also write the report here")
    args = parser.parse_args(argv)

    workdir = Path(tempfile.mkdtemp(prefix="synchuman-soak-"))
    soak = Soak(args, workdir)
    began = time.monotonic()
    try:
        soak.start()
        warm_at = time.monotonic()
        submitter = threading.Thread(target=soak.submit_all)
        submitter.start()
        time.sleep(min(20.0, args.duration / 10))
        memory_start = soak.memory()
        soak.inject_faults(until=warm_at + args.duration)
        submitter.join()
        submitted_s = time.monotonic() - warm_at
        outcome = soak.wait_drained(args.drain)
        memory_end = soak.memory()
    finally:
        soak.stop()
    growth = {k: round(100 * (memory_end[k] - memory_start[k]) / memory_start[k], 1) for k in memory_start}
    report = {
        "pipeline": args.pipeline,
        "workers": args.workers,
        "jobs_requested": args.jobs,
        "jobs_accepted": len(soak.accepted),
        "submission_seconds": round(submitted_s, 1),
        "total_seconds": round(time.monotonic() - began, 1),
        "answers": dict(soak.answers),
        "faults": dict(soak.faults),
        "worker_restarts": soak.restarts,
        "final_statuses": outcome["statuses"],
        "attempts": {str(k): v for k, v in sorted(outcome["attempts"].items())},
        "jobs_lost": len(outcome["lost"]),
        "jobs_run_twice": len(outcome["twice"]),
        "submit_latency_ms": {
            "p50": round(percentile(soak.latencies_ms, 50), 1),
            "p99": round(percentile(soak.latencies_ms, 99), 1),
            "max": round(max(soak.latencies_ms, default=float("nan")), 1),
            "mean": round(statistics.fmean(soak.latencies_ms), 1) if soak.latencies_ms else None,
        },
        "rss_mib_start": {k: round(v / 2**20, 1) for k, v in memory_start.items()},
        "rss_mib_end": {k: round(v / 2**20, 1) for k, v in memory_end.items()},
        "rss_growth_percent": growth,
        "logs": str(workdir),
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    ok = report["jobs_lost"] == 0 and report["jobs_run_twice"] == 0 and max(growth.values()) <= 10
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
