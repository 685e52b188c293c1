"""Throughput and latency of the API's hot paths, against real servers on this machine.

    python bench/bench_api.py [--duration 10] [--repeat 3] [--connections 32] [--log-level WARNING]
                              [--no-fast-job-reads]

Starts redis-server and SeaweedFS on loopback, then one uvicorn worker pinned to
CPU 0, and drives it with ``wrk`` (apt package ``wrk``).  The API has CPU 0 to
itself: redis-server, SeaweedFS and ``wrk`` are all pinned to CPU 1, so the
servers the API talks to and the load generator never take CPU time from the
API process (on a machine with one CPU nothing is pinned).  No Celery worker
consumes the queue: submissions go through the real Celery producer into Redis
and stay queued, which is what the API pays for.  Authentication and the queue
cap are off (``limits.max_queue_length=0``, or the queue would fill up during a
run), so no admission limit applies and a submission makes no admission round
trip to Redis: one Lua script writes the record and the Celery message.

Scenarios (each printed as requests/s, p50, p99, error count, and the API
process's CPU time per request, whose inverse is what one dedicated core could
serve: a measure that stays meaningful when other work shares the machine):

1. ``POST /v1/jobs`` with a 256x256 PNG upload, on the local backend and on S3;
2. ``GET /v1/jobs/{id}`` of a succeeded job with all its artifact URLs (S3 backend);
3. ``GET /v1/jobs/{id}`` of a queued job.

Targets (issue 2): 1 >= 500/s with p99 <= 50 ms; 2 >= 1,000/s with p99 <= 20 ms;
3 >= 5,000/s.
"""

from __future__ import annotations

import argparse
import io
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import httpx
from PIL import Image, ImageDraw

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from client.stack import (  # noqa: E402
    RedisServer,
    SeaweedS3,
    ServiceProcess,
    answers_http,
    api_process,
    free_port,
    service_env,
    stop_all,
    wait_until,
)
from shared.job_store import JobStore  # noqa: E402
from shared.jobs import JobRecord, JobStatus, new_job_id  # noqa: E402

BOUNDARY = "benchboundary7d93a"
ARTIFACTS = (
    ["input.png", "results.zip", "stage2/output.glb", "stage2/output_mesh.ply", "stage1/input.png"]
    + [f"stage1/color_{i}.png" for i in range(5)]
    + [f"stage1/normal_{i}.png" for i in range(5)]
    + ["stage1/latent.npz", "stage1/voxel.ply"]
)


@dataclass
class Result:
    name: str
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    errors: int
    requests: int
    cpu_ms_per_request: float = 0.0
    """CPU time the API process (all its threads) spent per request."""

    @property
    def one_core_capacity(self) -> float:
        """Requests/s one dedicated core could serve at this CPU cost."""
        return 1000.0 / self.cpu_ms_per_request if self.cpu_ms_per_request else 0.0


@dataclass
class Measured:
    """Repeated runs of one scenario."""

    runs: list[Result]

    @property
    def median(self) -> Result:
        """The run with the median rate (the lower middle one for an even count)."""
        ranked = sorted(self.runs, key=lambda r: r.requests_per_s)
        return ranked[(len(ranked) - 1) // 2]

    @property
    def rate_range(self) -> str:
        rates = [r.requests_per_s for r in self.runs]
        return f"{min(rates):.0f}-{max(rates):.0f}"


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


API_CPU = 0
"""The CPU the API process runs on, alone."""
SIDE_CPU = 1
"""The CPU shared by redis-server, SeaweedFS and the load generator."""


def pinned(cpu: int) -> tuple[str, ...]:
    """The command prefix that runs a process on CPU ``cpu``, where there is more than one CPU to pin to."""
    return ("taskset", "-c", str(cpu)) if shutil.which("taskset") and os.cpu_count() and os.cpu_count() > 1 else ()


def start_api(env: dict[str, str], workdir: Path, http: str) -> tuple[ServiceProcess, str]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = api_process(f"api-{port}", {**env, "SYNCHUMAN_STORAGE__PUBLIC_BASE_URL": url}, workdir, port,
                          "--workers", "1", "--loop", "uvloop", "--log-level", "warning",
                          wrap=pinned(API_CPU), http=http).start()
    wait_until(lambda: answers_http(f"{url}/healthz"), 60, "uvicorn")
    return process, url


def person_png(size: int = 256) -> bytes:
    """A 256x256 RGBA cut-out (a simple figure on transparency)."""
    image = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    draw.ellipse((108, 20, 148, 64), fill=(220, 180, 150, 255))
    draw.rectangle((96, 64, 160, 160), fill=(40, 90, 200, 255))
    draw.rectangle((100, 160, 126, 240), fill=(50, 50, 60, 255))
    draw.rectangle((130, 160, 156, 240), fill=(50, 50, 60, 255))
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def multipart_body(png: bytes) -> bytes:
    return (
        f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"person.png\"\r\n"
        f"Content-Type: image/png\r\n\r\n"
    ).encode() + png + f"\r\n--{BOUNDARY}--\r\n".encode()


def run_wrk(name: str, url: str, duration: float, connections: int, script: Path | None = None, api_pid: int | None = None) -> Result:
    cpu_before = process_cpu_s(api_pid) if api_pid else 0.0
    args = ["wrk", "-t", "1", "-c", str(connections), "-d", f"{int(duration)}s", "--latency", "--timeout", "5s"]
    if script:
        args += ["-s", str(script)]
    out = subprocess.run([*pinned(SIDE_CPU), *args, url], capture_output=True, text=True, check=True).stdout
    cpu_s = process_cpu_s(api_pid) - cpu_before if api_pid else 0.0

    def latency(pct: str) -> float:
        value, unit = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M).groups()
        return float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]

    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    errors = (int(non_2xx.group(1)) if non_2xx else 0) + (sum(map(int, socket_errors.groups())) if socket_errors else 0)
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    return Result(
        name=name,
        requests_per_s=float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        p50_ms=latency("50"),
        p99_ms=latency("99"),
        errors=errors,
        requests=requests,
        cpu_ms_per_request=1000.0 * cpu_s / requests if requests else 0.0,
    )


def submit_script(workdir: Path, body: bytes) -> Path:
    body_path = workdir / "body.bin"
    body_path.write_bytes(body)
    script = workdir / "submit.lua"
    script.write_text(
        f'local f = io.open("{body_path}", "rb")\n'
        "wrk.method = \"POST\"\n"
        f'wrk.headers["Content-Type"] = "multipart/form-data; boundary={BOUNDARY}"\n'
        "wrk.body = f:read(\"*all\")\nf:close()\n"
    )
    return script


def seed_jobs(redis_url: str, prefix: str) -> tuple[str, str]:
    """One succeeded job with the full artifact set and one queued job, written through the job store."""
    store = JobStore.from_url(redis_url, prefix=prefix, retention_s=3600)
    done, queued = new_job_id(), new_job_id()
    for job_id in (done, queued):
        store.create(JobRecord(id=job_id, input_key=f"jobs/{job_id}/input.png", options={"seed": 43}))
    store.transition(done, JobStatus.running, attempts=1, pipeline={"name": "preview", "version": "bench", "device": "cpu"})
    outputs = {name: f"jobs/{done}/{name}" for name in ARTIFACTS}
    timings = {"preprocess": 0.1, "stage1": 2.0, "stage2": 10.0, "export": 0.5, "upload": 0.2, "total": 12.8}
    store.transition(done, JobStatus.succeeded, outputs=outputs, timings=timings)
    return done, queued


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--repeat", type=int, default=3,
                        help="runs per scenario; the run with the median rate is reported, with the range of rates")
    parser.add_argument("--log-level", default="WARNING", help="SYNCHUMAN_LOG_LEVEL of the API process")
    parser.add_argument("--http", default="api.connection_guard:GuardedHttpProtocol",
                        help="uvicorn's --http: the protocol deployments run (default), or httptools to compare")
    parser.add_argument("--no-fast-job-reads", action="store_true",
                        help="answer GET /v1/jobs/{id} by the documented route only (api.fast_job_reads=false), "
                             "to measure what the fast path (api/fast_reads.py) saves")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("wrk is needed as the load generator: apt install wrk", file=sys.stderr)
        return 2

    processes: list[ServiceProcess] = []
    results: list[Measured] = []

    def measure(name: str, url: str, connections: int, script: Path | None, pid: int) -> Measured:
        return Measured([run_wrk(name, url, args.duration, connections, script, pid) for _ in range(args.repeat)])
    with tempfile.TemporaryDirectory(prefix="bench-api-") as tmp:
        workdir = Path(tmp)
        try:
            redis_server = RedisServer(workdir, aof=False, wrap=pinned(SIDE_CPU))
            processes.append(redis_server.process)
            redis_server.start()
            redis_url = redis_server.url
            seaweed = SeaweedS3(workdir, wrap=pinned(SIDE_CPU))
            processes.append(seaweed.process)
            seaweed.start()
            base_env = service_env(redis_url, SYNCHUMAN_LIMITS__MAX_QUEUE_LENGTH="0", SYNCHUMAN_LOG_LEVEL=args.log_level,
                                   SYNCHUMAN_API__FAST_JOB_READS=str(not args.no_fast_job_reads).lower())
            backends = {
                "local": {"SYNCHUMAN_STORAGE__BACKEND": "local", "SYNCHUMAN_STORAGE__LOCAL_DIR": str(workdir / "files")},
                "s3": seaweed.storage_env("bench"),
            }
            script = submit_script(workdir, multipart_body(person_png()))
            for backend, storage_env in backends.items():
                prefix = f"bench-{backend}"
                api_proc, api_url = start_api({**base_env, **storage_env, "SYNCHUMAN_REDIS__KEY_PREFIX": prefix}, workdir, args.http)
                processes.append(api_proc)
                check = httpx.post(f"{api_url}/v1/jobs", files={"image": ("p.png", person_png(), "image/png")})
                assert check.status_code == 202, check.text
                run_wrk(f"warm-up ({backend})", f"{api_url}/v1/jobs", 2, 8, script)
                pid = api_proc.pid
                results.append(measure(f"POST /v1/jobs 256px PNG ({backend})", f"{api_url}/v1/jobs", 16, script, pid))
                done, queued = seed_jobs(redis_url, prefix)
                body = httpx.get(f"{api_url}/v1/jobs/{done}").json()
                assert len(body["outputs"]) == len(ARTIFACTS), body
                results.append(measure(f"GET succeeded job, {len(ARTIFACTS)} URLs ({backend})", f"{api_url}/v1/jobs/{done}", args.connections, None, pid))
                results.append(measure(f"GET queued job ({backend})", f"{api_url}/v1/jobs/{queued}", args.connections, None, pid))
                api_proc.stop()
        finally:
            stop_all(processes)

    load = os.getloadavg()
    print(f"\nload average during the run: {load[0]:.1f} (1 min) on {os.cpu_count()} CPUs")
    print(f"each scenario run {args.repeat} times for {args.duration:.0f} s; the run with the median rate is shown")
    print(f"{'scenario':<44} {'req/s':>7} {'range':>11} {'p50 ms':>8} {'p99 ms':>8} {'errors':>6} {'requests':>8}"
          f" {'API CPU ms/req':>15} {'1-core req/s':>13}")
    for measured in results:
        r = measured.median
        errors = sum(run.errors for run in measured.runs)
        print(
            f"{r.name:<44} {r.requests_per_s:>7.0f} {measured.rate_range:>11} {r.p50_ms:>8.2f} {r.p99_ms:>8.2f}"
            f" {errors:>6} {r.requests:>8} {r.cpu_ms_per_request:>15.3f} {r.one_core_capacity:>13.0f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
