"""Scaling across the GPUs of one host: N pinned workers against one (issue 8).

    python bench/bench_multi_gpu.py                                   # synchuman, GPUs 0 and 1
    python bench/bench_multi_gpu.py --pipeline preview --devices fake0,fake1   # the same on a CPU
    python bench/bench_multi_gpu.py --pipeline preview --devices fake0,fake1 --cpus-per-worker 1

Starts redis-server, the API (uvicorn) and one Celery worker per entry of
``--devices`` with the project's own commands (those of docker-compose), each
worker pinned with ``CUDA_VISIBLE_DEVICES``.  The ``synchuman`` pipeline runs
on random full-size weights in the official layout, written once by
``bench/make_random_weights.py`` and ``bench/make_random_weights_stage2.py``
(timing does not depend on weight values).  Workers are independent processes:
no NCCL, and the machine's GPU settings are left alone.  Then, in one run:

1. **one worker**: worker 0 alone, warmed up by one job, runs ``--jobs`` jobs
   submitted at once; wall time from the first submission to the last finish;
2. **N workers**: the other workers start and are warmed up (until each has
   done a job), ``/readyz`` and ``/info`` are read while all are busy, and
   ``--jobs`` jobs run again; the figure to beat is wall_N <= 0.6 x wall_1
   for two workers;
3. **stop mid-job**: one job per worker; once the last worker's job is inside
   a model stage that worker gets ``--stop-signal`` (TERM, as ``docker stop``
   sends); its job must be redelivered once and finished once by another worker.

Every job's run interval, worker and history come from its record in Redis.
``nvidia-smi`` is sampled all along (when present) and summarised per phase:
mean utilisation and memory of each pinned GPU, and the share of samples in
which all of them were busy at once.  The figures are printed as text and,
with ``--json``, written to a file.  On a CPU the ``CUDA_VISIBLE_DEVICES``
values are labels only; ``--cpus-per-worker`` gives each worker its own cores,
the nearest CPU stand-in for one GPU per worker.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import redis

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from client.stack import free_port, redis_server_binary, stop_processes, wait_until  # noqa: E402
from shared.heartbeat import list_workers  # noqa: E402
from shared.job_store import JobKeys  # noqa: E402
from shared.jobs import JobRecord, JobStatus  # noqa: E402
from shared.webhook_signature import generate_secret  # noqa: E402

PREFIX = "bench-multi-gpu"
TARGET_RATIO = 0.6
"""Issue 8: wall time of the 8 jobs on two workers <= 0.6 x that on one."""
BUSY_UTILISATION = 10
"""A GPU counts as working in a sample when nvidia-smi reports at least this utilisation (%)."""
PREVIEW_OPTIONS = {"texture_size": 512, "simplify": 0.95}
"""Keeps preview jobs to seconds on a CPU; the synchuman jobs use the service defaults."""


# -- inputs ------------------------------------------------------------------


def person_photo(path: Path | None) -> bytes:
    """The photo every job gets: ``path``, else a sample beside the checkout, else a drawn silhouette."""
    if path is not None:
        return path.read_bytes()
    samples = sorted((REPO_ROOT.parent / "shared" / "samples").glob("*.png"))
    if samples:
        return samples[0].read_bytes()
    from PIL import Image, ImageDraw

    image = Image.new("RGBA", (768, 1024), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    draw.ellipse((324, 90, 444, 230), fill=(224, 182, 150, 255))  # head
    draw.rounded_rectangle((264, 240, 504, 600), radius=40, fill=(40, 90, 160, 255))  # torso
    draw.rounded_rectangle((200, 250, 262, 560), radius=28, fill=(224, 182, 150, 255))  # arms
    draw.rounded_rectangle((506, 250, 568, 560), radius=28, fill=(224, 182, 150, 255))
    draw.rounded_rectangle((284, 600, 378, 960), radius=30, fill=(50, 50, 60, 255))  # legs
    draw.rounded_rectangle((390, 600, 484, 960), radius=30, fill=(50, 50, 60, 255))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def ensure_random_weights(folder: Path) -> None:
    """Write the random full-size checkpoints once (minutes on a GPU), reused by later runs."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    if not (folder / "OneStage").is_dir():
        subprocess.run([sys.executable, "bench/make_random_weights.py", str(folder), "--device", "cuda"],
                       cwd=REPO_ROOT, env=env, check=True)
    if not (folder / "SecondStage").is_dir():
        subprocess.run([sys.executable, "bench/make_random_weights_stage2.py", str(folder / "SecondStage")],
                       cwd=REPO_ROOT, env=env, check=True)


# -- nvidia-smi ----------------------------------------------------------------


@dataclass
class GpuSample:
    at: float
    index: str
    uuid: str
    utilisation: float
    memory_mib: float


@dataclass
class GpuSampler:
    """``nvidia-smi`` polled every ``interval_ms`` in a child process; samples kept in memory."""

    interval_ms: int = 200
    samples: list[GpuSample] = field(default_factory=list)
    available: bool = False
    _process: subprocess.Popen | None = None

    def start(self) -> GpuSampler:
        binary = shutil.which("nvidia-smi")
        if binary is None:
            return self
        self.available = True
        self._process = subprocess.Popen(
            [binary, "--query-gpu=index,uuid,utilization.gpu,memory.used", "--format=csv,noheader,nounits",
             f"--loop-ms={self.interval_ms}"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )
        threading.Thread(target=self._read, daemon=True).start()
        return self

    def _read(self) -> None:
        assert self._process is not None and self._process.stdout is not None
        for line in self._process.stdout:
            parts = [p.strip() for p in line.split(",")]
            if len(parts) != 4:
                continue
            try:
                self.samples.append(GpuSample(time.time(), parts[0], parts[1], float(parts[2]), float(parts[3])))
            except ValueError:  # "[N/A]" on some boards
                continue

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            self._process.wait(10)

    def summary(self, devices: list[str], start: float, end: float) -> dict:
        """Per pinned GPU: mean utilisation and memory over [start, end]; and how often all were busy."""
        if not self.available:
            return {"nvidia_smi": "not found"}
        window = [s for s in self.samples if start <= s.at <= end]
        per_gpu = {d: [s for s in window if d in (s.index, s.uuid)] for d in devices}
        if not all(per_gpu.values()):
            return {"nvidia_smi": f"no samples for devices {devices}"}
        result: dict = {
            d: {"util_mean_pct": round(statistics.fmean(s.utilisation for s in ss), 1),
                "util_max_pct": max(s.utilisation for s in ss),
                "memory_max_mib": max(s.memory_mib for s in ss)}
            for d, ss in per_gpu.items()
        }
        # One nvidia-smi poll prints every GPU; group the lines of one poll by their order.
        rounds = zip(*(ss for ss in per_gpu.values()))
        busy = [all(s.utilisation >= BUSY_UTILISATION for s in polled) for polled in rounds]
        result["all_busy_share"] = round(sum(busy) / len(busy), 3) if busy else 0.0
        result["samples"] = len(busy)
        return result


# -- the service ---------------------------------------------------------------


@dataclass
class Service:
    """redis-server, the API and the pinned workers, all children of this process."""

    args: argparse.Namespace
    state: Path
    env: dict[str, str] = field(default_factory=dict)
    api_url: str = ""
    processes: list[subprocess.Popen] = field(default_factory=list)
    workers: dict[str, subprocess.Popen] = field(default_factory=dict)
    redis: redis.Redis | None = None
    keys: JobKeys = field(default_factory=lambda: JobKeys(PREFIX))

    def _spawn(self, args: list[str], env: dict[str, str], log: str) -> subprocess.Popen:
        handle = open(self.state / "logs" / log, "ab")
        process = subprocess.Popen(args, env=env, cwd=REPO_ROOT, stdout=handle, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL)
        handle.close()
        self.processes.append(process)
        return process

    def start(self) -> Service:
        (self.state / "logs").mkdir(parents=True, exist_ok=True)
        redis_port, api_port = free_port(), free_port()
        self.api_url = f"http://127.0.0.1:{api_port}"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("SYNCHUMAN_")}
        self.env.pop("CUDA_VISIBLE_DEVICES", None)
        self.env["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"  # CUDA's device numbers = nvidia-smi's indices
        self.env.update({
            "PYTHONPATH": str(REPO_ROOT),
            "SYNCHUMAN_REDIS__URL": f"redis://127.0.0.1:{redis_port}/0",
            "SYNCHUMAN_REDIS__KEY_PREFIX": PREFIX,
            "SYNCHUMAN_STORAGE__BACKEND": "local",
            "SYNCHUMAN_STORAGE__LOCAL_DIR": str(self.state / "storage"),
            "SYNCHUMAN_STORAGE__PUBLIC_BASE_URL": self.api_url,
            "SYNCHUMAN_WORKER__PIPELINE": self.args.pipeline,
            "SYNCHUMAN_WORKER__DEVICE": "cuda" if self.args.pipeline == "synchuman" else "cpu",
            "SYNCHUMAN_WORKER__VISIBILITY_TIMEOUT_S": str(self.args.visibility_timeout),
            "SYNCHUMAN_WORKER__UNACKED_RESTORE_INTERVAL_S": "1",
            "SYNCHUMAN_WORKER__HEARTBEAT_INTERVAL_S": "1",
            "SYNCHUMAN_WORKER__HEARTBEAT_TTL_S": "5",
            "SYNCHUMAN_WEBHOOKS__SECRET": generate_secret(32),
            "SYNCHUMAN_STORAGE__SIGNING_SECRET": secrets.token_hex(32),
        })
        if self.args.pipeline == "synchuman":
            self.env["SYNCHUMAN_WORKER__WEIGHTS_DIR"] = str(self.args.weights_dir)
        self._spawn([redis_server_binary(), "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
                     "--appendonly", "no", "--dir", str(self.state)], self.env, "redis.log")
        self._spawn([sys.executable, "-m", "uvicorn", "api.app:create_app", "--factory", "--host", "127.0.0.1",
                     "--port", str(api_port), "--log-level", "warning"], self.env, "api.log")
        self.redis = redis.Redis.from_url(self.env["SYNCHUMAN_REDIS__URL"])
        wait_until(lambda: self._answers("/healthz"), 60, "the API")
        return self

    def _answers(self, path: str) -> bool:
        try:
            return httpx.get(self.api_url + path, timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def start_worker(self, device: str) -> subprocess.Popen:
        """The worker command of docker-compose, pinned to ``device``."""
        env = {**self.env, "CUDA_VISIBLE_DEVICES": device}
        name = f"gpu-{device}"
        worker = self._spawn(
            [sys.executable, "-m", "celery", "-A", "worker.celery_app", "worker", "-P", "solo", "-c", "1", "-Q", "gpu",
             "-n", f"{name}@%h", "--without-gossip", "--without-mingle", "--loglevel", "INFO"],
            env, f"worker-{name}.log",
        )
        self.workers[device] = worker
        if self.args.cpus_per_worker:  # a CPU stand-in for a GPU: each worker gets its own cores
            index = len(self.workers) - 1
            first = index * self.args.cpus_per_worker
            os.sched_setaffinity(worker.pid, range(first, first + self.args.cpus_per_worker))
        return worker

    def wait_warm(self, devices: list[str], timeout: float) -> None:
        def warm() -> bool:
            for device in devices:
                if self.workers[device].poll() is not None:
                    raise RuntimeError(f"worker {device} exited; see {self.state / 'logs'}")
                failed = self.load_failure(device)
                if failed:
                    raise RuntimeError(f"worker {device} could not load its pipelines: {failed}")
            live = {w.cuda_visible_devices: w for w in list_workers(self.redis, self.keys)}
            return all(d in live and live[d].is_warm for d in devices)

        wait_until(warm, timeout, f"workers {devices} to be warm", interval=0.5)

    def load_failure(self, device: str) -> str | None:
        """The error a worker logged when its process-start hook failed (it then never gets warm)."""
        log = self.state / "logs" / f"worker-gpu-{device}.log"
        for line in log.read_text(errors="replace").splitlines() if log.exists() else []:
            if "_load_pipelines" in line and "raised" in line:
                return line[-300:]
        return None

    def heartbeats(self) -> dict[str, dict]:
        """worker_id -> heartbeat, from Redis."""
        return {w.worker_id: w.model_dump() for w in list_workers(self.redis, self.keys)}

    def submit(self, photo: bytes, options: dict) -> str:
        response = httpx.post(f"{self.api_url}/v1/jobs", files={"image": ("person.png", photo, "image/png")},
                              data={"options": json.dumps(options)}, timeout=60)
        response.raise_for_status()
        return response.json()["id"]

    def record(self, job_id: str) -> JobRecord:
        return JobRecord.model_validate_json(self.redis.get(self.keys.job(job_id)))

    def wait_finished(self, job_ids: list[str], timeout: float) -> list[JobRecord]:
        def finished() -> list[JobRecord] | None:
            records = [self.record(j) for j in job_ids]
            return records if all(r.status.is_terminal for r in records) else None

        return wait_until(finished, timeout, f"{len(job_ids)} jobs to finish", interval=0.2)

    def stop(self) -> None:
        stop_processes(self.processes, timeout=30)


# -- figures -------------------------------------------------------------------


def ran_exactly_once(record: JobRecord) -> bool:
    return record.status is JobStatus.succeeded and [e.status for e in record.history] == [
        JobStatus.running, JobStatus.succeeded]


def concurrent_seconds(records: list[JobRecord]) -> float:
    """Seconds during which at least two workers were running a job at the same time."""
    edges = sorted([(r.started_at, 1) for r in records] + [(r.finished_at, -1) for r in records])
    running, total, previous = 0, 0.0, None
    for at, step in edges:
        if running >= 2 and previous is not None:
            total += at - previous
        running += step
        previous = at
    return total


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of processes (all their threads), from /proc."""
    total = 0
    for pid in pids:
        stat = Path(f"/proc/{pid}/stat").read_text()
        fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) "; utime, stime are fields 14, 15
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def batch(service: Service, photo: bytes, options: dict, jobs: int, timeout: float) -> dict:
    """Submit ``jobs`` at once, wait for all; wall time from the first submission to the last finish."""
    pids = [w.pid for w in service.workers.values() if w.poll() is None]
    cpu_before = cpu_seconds(pids)
    submitted = time.time()
    job_ids = [service.submit(photo, options) for _ in range(jobs)]
    records = service.wait_finished(job_ids, timeout)
    cpu_used = cpu_seconds(pids) - cpu_before
    durations = [r.finished_at - r.started_at for r in records]
    per_worker: dict[str, int] = {}
    for r in records:
        per_worker[r.worker_id or "?"] = per_worker.get(r.worker_id or "?", 0) + 1
    return {
        "start": submitted,
        "end": max(r.finished_at for r in records),
        "wall_s": round(max(r.finished_at for r in records) - submitted, 2),
        "job_s_median": round(statistics.median(durations), 2),
        "job_s_max": round(max(durations), 2),
        "jobs_per_worker": per_worker,
        "ran_exactly_once": sum(ran_exactly_once(r) for r in records),
        "jobs": len(records),
        "concurrent_s": round(concurrent_seconds(records), 2),
        "worker_cpu_s_per_job": round(cpu_used / len(records), 2),
        "load_average_1m": round(os.getloadavg()[0], 1),
    }


def warm_up(service: Service, photo: bytes, options: dict, devices: list[str], timeout: float) -> None:
    """Run jobs until each worker in ``devices`` has done one (caches, kernels, graphs in place)."""
    for _ in range(5 * len(devices)):
        by_device = {h["cuda_visible_devices"]: h for h in service.heartbeats().values()}
        cold = [d for d in devices if by_device.get(d, {}).get("jobs_done", 0) == 0]
        if not cold:
            return
        service.wait_finished([service.submit(photo, options) for _ in cold], timeout)
        time.sleep(1.5)  # the heartbeat carrying jobs_done is published every second
    raise RuntimeError("warm-up did not reach every worker")


def stop_mid_job(service: Service, photo: bytes, options: dict, devices: list[str], sig: signal.Signals,
                 timeout: float) -> dict:
    """One job per worker; stop the first worker seen inside a model stage; follow its job."""
    job_ids = [service.submit(photo, options) for _ in devices]

    def in_model_stage() -> JobRecord | None:
        for job_id in job_ids:
            r = service.record(job_id)
            if r.status is JobStatus.running and r.worker_id and r.stage in ("stage1", "stage2"):
                return r
        return None

    running = wait_until(in_model_stage, timeout, "a job inside a model stage", 0.05)
    victim_id = running.worker_id
    victim = service.heartbeats()[victim_id]["cuda_visible_devices"]
    stopped_at = time.time()
    service.workers[victim].send_signal(sig)
    exit_code = service.workers[victim].wait(timeout=120)
    records = {r.id: r for r in service.wait_finished(job_ids, timeout)}
    moved = records[running.id]
    runs = [e for e in moved.history if e.status is JobStatus.running]
    return {
        "signal": sig.name,
        "stopped_device": victim,
        "stopped_in_stage": running.stage.value if running.stage else None,
        "worker_exit_code": exit_code,
        "moved_job_status": moved.status.value,
        "moved_job_runs": len(runs),
        "moved_job_finishes": sum(e.status.is_terminal for e in moved.history),
        "moved_to_other_worker": moved.worker_id not in (None, victim_id),
        "moved_to_device": service.heartbeats().get(moved.worker_id or "", {}).get("cuda_visible_devices"),
        "rerun_after_stop_s": round(runs[-1].at - stopped_at, 2) if len(runs) > 1 else None,
        "finished_after_stop_s": round((moved.finished_at or stopped_at) - stopped_at, 2),
        "other_jobs_ran_once": sum(ran_exactly_once(r) for i, r in records.items() if i != running.id),
    }


def snapshot(service: Service) -> dict:
    """What ``/readyz`` and ``/info`` say about the workers."""
    ready = httpx.get(f"{service.api_url}/readyz", timeout=5)
    info = httpx.get(f"{service.api_url}/info", timeout=5).json()
    return {
        "readyz_status": ready.status_code,
        "readyz_workers": [
            {k: w[k] for k in ("cuda_visible_devices", "device", "state", "pipeline", "gpu_memory_reserved_bytes")}
            for w in ready.json()["workers"]
        ],
        "info_workers": [{k: w[k] for k in ("gpus", "device", "state", "current_job")} for w in info["workers"]],
    }


def run(args: argparse.Namespace) -> dict:
    devices = [d.strip() for d in args.devices.split(",") if d.strip()]
    if len(devices) < 2:
        raise SystemExit("--devices needs at least two entries")
    options = json.loads(args.options) if args.options else (PREVIEW_OPTIONS if args.pipeline == "preview" else {})
    photo = person_photo(args.photo)
    if args.pipeline == "synchuman":
        ensure_random_weights(args.weights_dir)
    state = Path(args.state_dir or tempfile.mkdtemp(prefix="bench-multi-gpu-"))
    sampler = GpuSampler().start()
    service = Service(args, state)
    figures: dict = {"pipeline": args.pipeline, "devices": devices, "jobs": args.jobs, "options": options,
                     "cpus_per_worker": args.cpus_per_worker, "logs": str(state / "logs")}
    try:
        service.start()
        started = time.time()
        service.start_worker(devices[0])
        service.wait_warm(devices[:1], args.load_timeout)
        figures["load_s"] = round(time.time() - started, 1)
        warm_up(service, photo, options, devices[:1], args.job_timeout)
        single = batch(service, photo, options, args.jobs, args.job_timeout * args.jobs)
        single["gpus"] = sampler.summary(devices[:1], single.pop("start"), single.pop("end"))
        figures["one_worker"] = single

        for device in devices[1:]:
            service.start_worker(device)
        service.wait_warm(devices, args.load_timeout)
        warm_up(service, photo, options, devices, args.job_timeout)

        snapshots: list[dict] = []
        watcher_stop = threading.Event()

        def watch() -> None:  # /readyz and /info once every worker is busy
            while not watcher_stop.wait(0.5) and not snapshots:
                if all(h["state"] == "busy" for h in service.heartbeats().values()):
                    snapshots.append(snapshot(service))

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        multi = batch(service, photo, options, args.jobs, args.job_timeout * args.jobs)
        watcher_stop.set()
        watcher.join()
        multi["gpus"] = sampler.summary(devices, multi.pop("start"), multi.pop("end"))
        figures["n_workers"] = multi
        figures["while_all_busy"] = snapshots[0] if snapshots else None
        figures["ratio_n_over_one"] = round(multi["wall_s"] / single["wall_s"], 3)
        figures["speedup"] = round(single["wall_s"] / multi["wall_s"], 2)
        figures["stop_mid_job"] = stop_mid_job(service, photo, options, devices,
                                               signal.Signals[f"SIG{args.stop_signal}"],
                                               args.job_timeout * 2 + args.visibility_timeout)
        figures["after_stop"] = snapshot(service)
    finally:
        service.stop()
        sampler.stop()
    return figures


def report(figures: dict) -> str:
    one, many, stop = figures["one_worker"], figures["n_workers"], figures["stop_mid_job"]
    n = len(figures["devices"])
    lines = [
        f"pipeline {figures['pipeline']} on devices {','.join(figures['devices'])}; {figures['jobs']} jobs per batch;"
        f" options {json.dumps(figures['options'])}; cores per worker {figures['cpus_per_worker'] or 'all'}",
        f"worker load (to warm): {figures['load_s']} s",
        f"1 worker : wall {one['wall_s']} s, job median {one['job_s_median']} s, ran exactly once"
        f" {one['ran_exactly_once']}/{one['jobs']}, worker CPU {one['worker_cpu_s_per_job']} s/job,"
        f" load average {one['load_average_1m']}",
        f"{n} workers: wall {many['wall_s']} s, job median {many['job_s_median']} s, ran exactly once"
        f" {many['ran_exactly_once']}/{many['jobs']}, jobs per worker {sorted(many['jobs_per_worker'].values())},"
        f" >=2 workers running for {many['concurrent_s']} s, worker CPU {many['worker_cpu_s_per_job']} s/job,"
        f" load average {many['load_average_1m']}",
        f"wall {n} workers / 1 worker = {figures['ratio_n_over_one']} (speed-up {figures['speedup']}x;"
        f" issue 8 asks <= {TARGET_RATIO} for 2 workers: {'met' if figures['ratio_n_over_one'] <= TARGET_RATIO else 'NOT met'})",
        f"GPUs, 1 worker : {json.dumps(one['gpus'])}",
        f"GPUs, {n} workers: {json.dumps(many['gpus'])}",
        f"while all busy: {json.dumps(figures['while_all_busy'])}",
        f"stop mid-job ({stop['signal']} to device {stop['stopped_device']} in {stop['stopped_in_stage']}): worker exit {stop['worker_exit_code']},"
        f" job {stop['moved_job_status']}, runs {stop['moved_job_runs']}, finishes {stop['moved_job_finishes']},"
        f" moved to device {stop['moved_to_device']} ({stop['moved_to_other_worker']}),"
        f" re-run {stop['rerun_after_stop_s']} s and finished {stop['finished_after_stop_s']} s after the stop;"
        f" other jobs ran once {stop['other_jobs_ran_once']}/{n - 1}",
        f"after the stop: {json.dumps(figures['after_stop'])}",
        f"logs: {figures['logs']}",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pipeline", choices=("synchuman", "preview"), default="synchuman")
    parser.add_argument("--devices", default="0,1", help="CUDA_VISIBLE_DEVICES of each worker, comma-separated")
    parser.add_argument("--jobs", type=int, default=8, help="jobs per timed batch")
    parser.add_argument("--options", default=None, help="job options as JSON (default: service defaults; preview: fast)")
    parser.add_argument("--photo", type=Path, default=None, help="RGBA photo of a person (default: a sample or a drawing)")
    parser.add_argument("--weights-dir", type=Path, default=Path(tempfile.gettempdir()) / "synchuman-random-weights",
                        help="random full-size weights (written there if missing)")
    parser.add_argument("--state-dir", default=None, help="logs, storage, redis (default: a new temporary folder)")
    parser.add_argument("--stop-signal", choices=("TERM", "KILL"), default="TERM",
                        help="TERM: the job is released at once; KILL: it waits for --visibility-timeout")
    parser.add_argument("--visibility-timeout", type=int, default=1800,
                        help="broker redelivery delay (s); above the longest job, or idle workers re-run busy ones' jobs")
    parser.add_argument("--load-timeout", type=float, default=1800.0, help="seconds for the workers to get warm")
    parser.add_argument("--job-timeout", type=float, default=900.0, help="seconds one job may take")
    parser.add_argument("--cpus-per-worker", type=int, default=0,
                        help="CPU runs: pin worker i to cores [i*k, (i+1)*k), as each GPU worker has its own device")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args(argv)
    figures = run(args)
    print(report(figures))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))
    ok = (figures["one_worker"]["ran_exactly_once"] == args.jobs and figures["n_workers"]["ran_exactly_once"] == args.jobs
          and figures["stop_mid_job"]["moved_job_runs"] == 2 and figures["stop_mid_job"]["moved_job_finishes"] == 1)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
