"""One generation job, start to finish, on a warm runtime.

The task that calls :func:`run_job` may be delivered more than once (late
acks: a worker that dies mid-job leaves its message to be redelivered), so
this function is idempotent:

* a finished job (succeeded, failed, canceled) is left alone;
* a job already started ``worker.max_attempts`` times is marked failed
  (``worker_lost``) instead of being run again, so a job that kills its worker
  never loops;
* otherwise the job (re)starts from its stored input.  Artifacts always go to
  the same keys.  The record lists the stage-1 set once all of it is uploaded
  (so clients see the five views while stage 2 runs) and the full set only
  when it is marked succeeded, so no reader ever sees a partial or mixed set.
  A restart clears the listed outputs first; a failed or canceled job lists
  none and its partial artifacts are removed.
* an attempt writes its outcome only while it still owns the job: if the job
  outlived the visibility timeout and another worker claimed it, the older
  attempt's result is dropped and the newer one finishes the job.
"""

from __future__ import annotations

import io
import logging
import time
from typing import TYPE_CHECKING, Any

import redis
from PIL import Image

from shared.errors import JobCanceledError, JobNotFoundError, ServiceError, WorkerLostError
from shared.jobs import JobError, JobRecord, JobStage, JobStatus, overall_progress, transition
from shared.options import GenerationOptions
from shared.storage.base import content_type_for
from shared.structured_logging import job_id_var
from worker.faults import (
    AttemptSuperseded,
    WorkerShuttingDown,
    out_of_memory_error,
    release_for_requeue,
    remove_partial_artifacts,
    retry_on_redis_errors,
)
from shared.webhooks import WebhookEvent
from worker.webhooks import fire_event

if TYPE_CHECKING:
    from worker.runtime import WorkerRuntime

log = logging.getLogger("synchuman.worker")

PROGRESS_WRITE_INTERVAL_S = 0.25
"""Least time between two progress writes to the job record."""


PIPELINE_ERROR_MESSAGE = "the model failed on this job; the details are in the worker's log"
"""The job record's message for an unexpected pipeline exception (never its text: it may hold paths)."""


class ProgressReporter:
    """The pipelines' ``callback(stage, step, total)``: writes progress, checks for cancellation.

    Cancellation is checked at every step (one Redis read), so a canceled job
    stops at the end of the step that was running; progress is written at most
    every ``PROGRESS_WRITE_INTERVAL_S`` and never goes down within an attempt,
    also when a pipeline reports a later stage from inside an earlier one (stage
    2 runs the export and reports it as ``export``).
    """

    def __init__(self, runtime: WorkerRuntime, job_id: str) -> None:
        self.runtime = runtime
        self.job_id = job_id
        self.stage = JobStage.preprocess
        self.entered_at: dict[JobStage, float] = {}
        """``time.perf_counter()`` when each stage began (the last time, for a stage entered twice)."""
        self._last_write = 0.0

    def enter(self, stage: JobStage) -> None:
        self.stage = stage
        self.entered_at[stage] = time.perf_counter()
        if self.runtime.watchdog is not None:
            self.runtime.watchdog.arm(self.job_id, stage.value)
        self._write(overall_progress(stage, 0, 1))

    def __call__(self, stage_name: str, step: int, total: int) -> None:
        if self.runtime.shutting_down.is_set():
            raise WorkerShuttingDown("the worker is shutting down")
        if stage_name in JobStage.__members__ and stage_name != self.stage.value:
            self.enter(JobStage(stage_name))
        now = time.monotonic()
        if step < total and now - self._last_write < PROGRESS_WRITE_INTERVAL_S:
            self._check_canceled()
            return
        self._write(overall_progress(self.stage, step, total))

    def _check_canceled(self) -> None:
        try:
            record = self.runtime.store.get(self.job_id)
        except (redis.ConnectionError, redis.TimeoutError):  # checked again at the next step
            return
        self._check_owner(record)

    def _check_owner(self, record: JobRecord) -> None:
        worker_id = self.runtime.heartbeat.worker_id
        if record.status is JobStatus.running and record.worker_id != worker_id:
            raise AttemptSuperseded(f"the job was claimed by {record.worker_id}")
        if record.cancel_requested:
            raise JobCanceledError("the job was canceled")

    def _write(self, progress: float) -> None:
        self._last_write = time.monotonic()
        stage = self.stage

        worker_id = self.runtime.heartbeat.worker_id

        def advance(record: JobRecord) -> JobRecord | None:
            if record.status is not JobStatus.running or record.worker_id != worker_id:
                return None
            return record.model_copy(update={"stage": stage, "progress": max(progress, record.progress, 0.0)})

        try:
            record = self.runtime.store.update(self.job_id, advance)
        except (redis.ConnectionError, redis.TimeoutError):  # progress is advisory; the job goes on
            log.warning("progress not written: redis unreachable", extra={"job_id": self.job_id})
            return
        self._check_owner(record)


def run_job(runtime: WorkerRuntime, job_id: str) -> JobRecord | None:
    """Run (or finish off) job ``job_id``; returns its final record, or None if it is gone."""
    store = runtime.store
    max_attempts = runtime.settings.worker.max_attempts

    def start(record: JobRecord) -> JobRecord | None:
        if record.status.is_terminal:
            return None
        if record.attempts >= max_attempts:
            lost = WorkerLostError(f"the job stopped its worker {record.attempts} times; giving up")
            return transition(record, JobStatus.failed, error=JobError(**lost.to_dict()))
        return transition(
            record,
            JobStatus.running,
            attempts=record.attempts + 1,
            stage=JobStage.preprocess,
            progress=0.0,
            worker_id=runtime.heartbeat.worker_id,
            pipeline=runtime.pipeline_info,
            timings={},
            outputs={},  # an earlier attempt's stage-1 set is rewritten by this one
        )

    try:
        record = store.update(job_id, start)
    except JobNotFoundError:
        log.warning("job record missing; message dropped", extra={"job_id": job_id})
        return None
    if record.status is not JobStatus.running or record.worker_id != runtime.heartbeat.worker_id:
        return record
    fire_event(record, WebhookEvent.started)

    runtime.set_busy(job_id)
    started = time.monotonic()
    job_token = job_id_var.set(job_id)
    if record.attempts == 1 and record.started_at is not None:
        runtime.metrics.observe_wait(record.started_at - record.created_at)
    try:
        outputs, timings = _generate(runtime, record)
    except JobCanceledError:
        remove_partial_artifacts(runtime.storage, job_id)
        return store.transition(job_id, JobStatus.canceled)
    except WorkerShuttingDown:
        log.info("job released to another worker: shutting down", extra={"job_id": job_id})
        return release_for_requeue(store, job_id, runtime.heartbeat.worker_id)
    except AttemptSuperseded as exc:
        log.warning("attempt stopped: %s", exc, extra={"job_id": job_id})
        return store.get(job_id)
    except ServiceError as exc:
        return _fail(runtime, job_id, exc.to_dict())
    except Exception as exc:  # the model failed: keep the record truthful, never loop
        input_error = _pipeline_input_error(exc)
        if input_error is not None:
            return _fail(runtime, job_id, input_error)
        oom_error = out_of_memory_error(exc)
        if oom_error is not None:
            return _fail(runtime, job_id, oom_error)
        log.exception("job failed", extra={"job_id": job_id, "error": type(exc).__name__})
        retryable = type(exc).__name__ in ("OutOfMemoryError", "MemoryError")
        return _fail(runtime, job_id, {"code": "pipeline_error", "message": PIPELINE_ERROR_MESSAGE, "retryable": retryable})
    finally:
        if runtime.watchdog is not None:
            runtime.watchdog.disarm()
        job_id_var.reset(job_token)
        runtime.set_busy(None)

    final = _finish_attempt(runtime, job_id, JobStatus.succeeded, stage=JobStage.upload, outputs=outputs, timings=timings)
    if final is None:
        return store.get(job_id)
    for stage_name, seconds in timings.items():
        if stage_name != "total":
            runtime.metrics.observe_stage(stage_name, seconds)
    store.record_duration(time.monotonic() - started)
    runtime.heartbeat.jobs_done += 1
    log.info("job succeeded", extra={"job_id": job_id, "seconds": round(time.monotonic() - started, 2)})
    return final


def _pipeline_input_error(exc: Exception) -> dict[str, Any] | None:
    from pipelines.base import PipelineInputError

    if isinstance(exc, PipelineInputError):
        return {"code": exc.code, "message": exc.message, "retryable": False}
    return None


def _fail(runtime: WorkerRuntime, job_id: str, error: dict[str, Any]) -> JobRecord:
    failed = _finish_attempt(runtime, job_id, JobStatus.failed, error=JobError(**error))
    if failed is None:
        return runtime.store.get(job_id)
    log.info("job failed", extra={"job_id": job_id, "code": error["code"]})
    remove_partial_artifacts(runtime.storage, job_id)
    return failed


def _finish_attempt(runtime: WorkerRuntime, job_id: str, status: JobStatus, **changes: Any) -> JobRecord | None:
    """Write this attempt's outcome, only if the job is still this worker's running attempt.

    A job that outlives the broker's visibility timeout is redelivered and
    claimed by another worker while this one still runs it; the newer attempt
    owns the record from then on.  This attempt's outcome is then dropped
    (returns None), and it leaves the artifacts alone: the owner writes the
    same keys and publishes them itself.
    """
    worker_id = runtime.heartbeat.worker_id
    applied: list[JobRecord] = []

    def finish(record: JobRecord) -> JobRecord | None:
        if record.status is not JobStatus.running or record.worker_id != worker_id:
            return None
        applied.append(transition(record, status, **changes))
        return applied[-1]

    current = retry_on_redis_errors(lambda: runtime.store.update(job_id, finish))
    if not applied or current is not applied[-1]:
        log.warning(
            "outcome dropped: the job is no longer this worker's attempt",
            extra={"job_id": job_id, "status": current.status.value, "owner": current.worker_id},
        )
        return None
    return current


def _publish_stage1(runtime: WorkerRuntime, record: JobRecord, files: dict[str, bytes]) -> dict[str, str]:
    """Upload the whole stage-1 set, then list it on the record; returns the outputs listed (name -> key).

    Uploading everything before the one record write means a reader sees either
    no stage-1 outputs or all of them.  The ``stage1.completed`` webhook fires
    after the write, so its payload carries the stage-1 URLs.
    """
    outputs: dict[str, str] = {"input.png": record.input_key}
    for name, data in files.items():
        key = f"jobs/{record.id}/stage1/{name}"
        runtime.storage.put_bytes(key, data, content_type_for(key))
        outputs[f"stage1/{name}"] = key
    worker_id = record.worker_id

    def publish(current: JobRecord) -> JobRecord | None:
        if current.status is not JobStatus.running or current.worker_id != worker_id:
            return None  # canceled, timed out or taken over meanwhile: list nothing
        return current.model_copy(update={"outputs": outputs})

    published = retry_on_redis_errors(lambda: runtime.store.update(record.id, publish))
    if published.cancel_requested:
        raise JobCanceledError("the job was canceled")
    if published.status is JobStatus.running and published.outputs == outputs:
        fire_event(published, WebhookEvent.stage1_completed)
    return outputs


def _generate(runtime: WorkerRuntime, record: JobRecord) -> tuple[dict[str, str], dict[str, float]]:
    """Run both stages and upload every artifact; returns (name -> key, timings)."""
    import torch

    from pipelines.artifacts import results_zip, stage1_files, stage2_files
    from pipelines.outputs import model_outputs

    options = GenerationOptions.model_validate(record.options)
    progress = ProgressReporter(runtime, record.id)
    timings: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(stage: JobStage, until: float | None = None) -> None:  # adds up: uploads come twice
        nonlocal clock
        now = time.perf_counter() if until is None else until
        timings[stage.value] = round(timings.get(stage.value, 0.0) + now - clock, 3)
        clock = now

    progress.enter(JobStage.preprocess)
    image = Image.open(io.BytesIO(runtime.storage.get_bytes(record.input_key)))
    image.load()
    image = image.convert("RGBA" if "A" in image.getbands() else "RGB")
    image = runtime.pipelines.cut_out(image)  # the person as RGBA, or no_person before any GPU work
    lap(JobStage.preprocess)

    progress.enter(JobStage.stage1)
    generator = torch.Generator(device="cpu").manual_seed(options.seed)
    views = runtime.pipelines.stage1(image, generator=generator, callback=progress, **options.stage1_kwargs())
    lap(JobStage.stage1)
    s1 = stage1_files(views)
    outputs = _publish_stage1(runtime, record, s1)
    lap(JobStage.upload)

    mesh = None
    if not options.stage1_only:
        progress.enter(JobStage.stage2)
        mesh = runtime.pipelines.stage2(views, generator=generator, callback=progress, **options.stage2_kwargs())
        # A stage-2 pipeline that exports the mesh itself reports it as ``export``: time it as such.
        lap(JobStage.stage2, until=progress.entered_at.get(JobStage.export))

    progress.enter(JobStage.export)
    rigged = None
    if mesh is not None and options.rig:
        from pipelines.rig import rig_glb

        rigged = rig_glb(mesh.glb, views.colors[0])  # the front view the mesh was built from
    s2 = stage2_files(mesh, rigged.glb if rigged else None) if mesh is not None else {}
    extra = model_outputs(mesh.glb, options.formats, callback=progress) if mesh is not None else None
    if extra is not None:
        s2.update(extra.files)  # thumbnail, turntables, the formats asked for: in stage2/ and in the zip
    metadata = {
        "job_id": record.id,
        "pipeline": {**runtime.pipeline_info, "description": runtime.pipelines.description},
        "parameters": options.model_dump(),
        "timings": {
            **timings,
            "stage1_steps": views.timings,
            "stage2_steps": mesh.timings if mesh else {},
            **({"rig_steps": rigged.timings} if rigged else {}),
            "outputs": extra.timings if extra else {},
        },
        "mesh": {"num_vertices": mesh.num_vertices, "num_faces": mesh.num_faces} if mesh else None,
        "attempt": record.attempts,
        "created_at": record.created_at,
    }
    archive = results_zip(s1, s2, metadata)
    lap(JobStage.export)

    progress.enter(JobStage.upload)
    prefix = f"jobs/{record.id}"
    files = {f"stage2/{name}": data for name, data in s2.items()}  # stage 1 is already uploaded
    files["results.zip"] = archive
    for name, data in files.items():
        key = f"{prefix}/{name}"
        runtime.storage.put_bytes(key, data, content_type_for(key))
        outputs[name] = key
    lap(JobStage.upload)
    timings["total"] = round(sum(timings.values()), 3)
    return outputs, timings
