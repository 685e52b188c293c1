"""One generation job, start to finish, on a warm runtime.

The task that calls :func:`run_job` may be delivered more than once, so this
is idempotent: :class:`~worker.attempt.JobAttempt` claims the job (or leaves a
finished one alone, or ends one that used up its attempts) and owns every
status change while it runs.  Artifacts always go to the same keys: the stage-1
set is uploaded, then listed on the record in one write (clients see the five
views while stage 2 runs); the full set is listed only when the job is marked
succeeded, so no reader ever sees a partial or mixed set.

How each failure ends the job (always through the attempt, so ``completed``
fires once, and a failed or canceled job keeps no partial artifacts):

==============================================  =====================================================
what happened                                   the job
==============================================  =====================================================
a cancel was requested                          canceled at the next step
the pipeline refused the input                  failed with the pipeline's code (``no_foreground``...)
GPU out of memory                               failed ``gpu_out_of_memory`` (memory freed)
a service error (storage down past retries...)  failed with its code
the model raised anything else                  failed ``pipeline_error`` (message generic)
anything else raised around the model           failed ``internal_error`` (message generic)
Redis unreachable past ``worker.redis_retry_s``  failed ``queue_unavailable`` (retryable); if even that
                                                cannot be written, recovered by the API (requeued)
the worker shuts down (SIGTERM)                 released to the queue, the start not counted
the attempt lost the job                        nothing: the job's owner finishes it
==============================================  =====================================================
"""

from __future__ import annotations

import io
import logging
import time
from dataclasses import asdict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from PIL import Image

from shared.artifacts import artifact_key
from shared.errors import (
    InternalError,
    InvalidInputError,
    JobCanceledError,
    JobNotFoundError,
    PipelineError,
    QueueUnavailableError,
    ServiceError,
)
from shared.jobs import JobRecord, JobStage, JobStatus, overall_progress
from shared.options import GenerationOptions
from shared.storage.base import content_type_for
from shared.structured_logging import job_id_var
from worker.attempt import REDIS_ERRORS, AttemptStopped, AttemptSuperseded, JobAttempt, WorkerShuttingDown
from worker.gpu_memory import out_of_memory_error
from worker.pipeline_options import pipeline_options

if TYPE_CHECKING:
    from worker.runtime import WorkerRuntime

log = logging.getLogger("synchuman.worker")

T = TypeVar("T")

PROGRESS_WRITE_INTERVAL_S = 0.25
"""Least time between two progress writes to the job record."""

PIPELINE_ERROR_MESSAGE = "the model failed on this job; the details are in the worker's log"
"""The job record's message for an unexpected pipeline exception (never its text: it may hold paths)."""
INTERNAL_ERROR_MESSAGE = "the worker failed on this job; the details are in its log"


class ProgressReporter:
    """The pipelines' ``callback(stage, step, total)``: writes progress, and raises to stop the run
    when the worker shuts down, the job was canceled or the attempt lost the job.

    Cancellation is checked at every step (one Redis read), so a canceled job
    stops at the end of the step that was running; progress is written at most
    every ``PROGRESS_WRITE_INTERVAL_S`` and never goes down within an attempt,
    also when a pipeline reports a later stage from inside an earlier one (stage
    2 runs the export and reports it as ``export``).
    """

    def __init__(self, runtime: WorkerRuntime, attempt: JobAttempt) -> None:
        self.runtime = runtime
        self.attempt = attempt
        self.stage = JobStage.preprocess
        self.entered_at: dict[JobStage, float] = {}
        """``time.perf_counter()`` when each stage began (the last time, for a stage entered twice)."""
        self._last_write = 0.0

    def enter(self, stage: JobStage) -> None:
        if stage is JobStage.export and self.runtime.gpu_turns is not None:
            self.runtime.gpu_turns.give_back()  # the export is CPU work: the next job's stages may start
        self.stage = stage
        self.entered_at[stage] = time.perf_counter()
        if self.runtime.watchdog is not None:
            self.runtime.watchdog.arm(self.attempt.job_id, stage.value)
        self._write(overall_progress(stage, 0, 1))

    def __call__(self, stage_name: str, step: int, total: int) -> None:
        if self.runtime.shutting_down.is_set():
            raise WorkerShuttingDown("the worker is shutting down")
        if stage_name in JobStage.__members__ and stage_name != self.stage.value:
            self.enter(JobStage(stage_name))
        if step < total and time.monotonic() - self._last_write < PROGRESS_WRITE_INTERVAL_S:
            self.attempt.check()
            return
        self._write(overall_progress(self.stage, step, total))

    def check(self) -> None:
        """Raise if the run must stop (shutdown, cancel, lost job); for waits between steps."""
        if self.runtime.shutting_down.is_set():
            raise WorkerShuttingDown("the worker is shutting down")
        self.attempt.check()

    def _write(self, progress: float) -> None:
        self._last_write = time.monotonic()
        self.attempt.progress(self.stage, progress)


def run_job(runtime: WorkerRuntime, job_id: str) -> JobRecord | None:
    """Run (or finish off) job ``job_id``; returns its record afterwards, or None if it is gone."""
    attempt = runtime.attempt_for(job_id)
    runtime.set_busy(job_id)  # before the claim: a running job's worker always names it in its heartbeat
    try:
        record = attempt.claim(max_attempts=runtime.settings.worker.max_attempts, pipeline=runtime.pipeline_info)
        if record is None:
            return _current(runtime, job_id)
        return _run_claimed(runtime, attempt, record)
    finally:
        runtime.set_busy(None)


def _run_claimed(runtime: WorkerRuntime, attempt: JobAttempt, record: JobRecord) -> JobRecord | None:
    job_id = record.id
    started = time.monotonic()
    job_token = job_id_var.set(job_id)
    if record.attempts == 1 and record.started_at is not None:
        runtime.metrics.observe_wait(record.started_at - record.created_at)
    try:
        outputs, timings = _generate(runtime, attempt, record)
        final = attempt.succeed(outputs, timings)
    except JobCanceledError:
        final = attempt.cancel()
    except WorkerShuttingDown:
        log.info("job released to another worker: shutting down", extra={"job_id": job_id})
        final = attempt.release()
    except AttemptSuperseded as exc:
        log.warning("attempt stopped: %s", exc, extra={"job_id": job_id})
        final = None
    except REDIS_ERRORS:
        log.error("redis unreachable past the retry window", extra={"job_id": job_id})
        final = attempt.fail(QueueUnavailableError("the service lost its job queue while running the job; retry it"))
    except ServiceError as exc:
        final = attempt.fail(exc)
    except Exception as exc:  # a defect around the model: keep the record truthful, never loop
        log.error("job failed", extra={"job_id": job_id, "error": type(exc).__name__}, exc_info=exc)
        final = attempt.fail(InternalError(INTERNAL_ERROR_MESSAGE))
    finally:
        if runtime.gpu_turns is not None:
            runtime.gpu_turns.give_back()
        if runtime.watchdog is not None:
            runtime.watchdog.disarm()
        job_id_var.reset(job_token)
    if final is not None and final.status is JobStatus.succeeded:
        for stage_name, seconds in final.timings.items():
            if stage_name != "total":
                runtime.metrics.observe_stage(stage_name, seconds)
        runtime.store.record_duration(time.monotonic() - started)
        runtime.heartbeat.jobs_done += 1
    return final if final is not None else _current(runtime, job_id)


def _current(runtime: WorkerRuntime, job_id: str) -> JobRecord | None:
    try:
        return runtime.store.get(job_id)
    except JobNotFoundError:
        return None


def run_model(stage: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Call one pipeline stage; what it raises becomes the service error the job fails with.

    The input refused -> the pipeline's code; GPU memory exhausted -> ``gpu_out_of_memory``
    (memory freed); anything else -> ``pipeline_error``, its text in the log only (it may
    hold paths).  The attempt's own stops (cancel, shutdown, lost job) pass through.
    """
    from pipelines.base import PipelineInputError

    try:
        return stage(*args, **kwargs)
    except (AttemptStopped, ServiceError):
        raise
    except PipelineInputError as exc:
        raise InvalidInputError(exc.message, code=exc.code) from None
    except Exception as exc:
        oom = out_of_memory_error(exc)
        if oom is not None:
            raise oom from None
        log.error("the model failed", extra={"error": type(exc).__name__}, exc_info=exc)
        raise PipelineError(PIPELINE_ERROR_MESSAGE, retryable=isinstance(exc, MemoryError)) from None


def _upload(runtime: WorkerRuntime, job_id: str, files: dict[str, bytes]) -> dict[str, str]:
    """Store ``files`` (artifact name -> bytes) under the job's prefix; artifact name -> key."""
    keys = {}
    for name, data in files.items():
        key = artifact_key(job_id, name)
        runtime.storage.put_bytes(key, data, content_type_for(key))
        keys[name] = key
    return keys


def _generate(runtime: WorkerRuntime, attempt: JobAttempt, record: JobRecord) -> tuple[dict[str, str], dict[str, float]]:
    """Run both stages and upload every artifact; returns (name -> key, timings)."""
    import torch

    from pipelines.artifacts import results_zip, stage1_files, stage2_files
    from pipelines.outputs import model_outputs

    options = GenerationOptions.model_validate(record.options)
    stage1_options, stage2_options = pipeline_options(options)
    progress = ProgressReporter(runtime, attempt)
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
    image = run_model(runtime.pipelines.cut_out, image)  # the person as RGBA, or no_person before any GPU work
    lap(JobStage.preprocess)

    if runtime.gpu_turns is not None:
        timings["gpu_wait"] = round(runtime.gpu_turns.take(check=progress.check), 3)
        clock = time.perf_counter()
    progress.enter(JobStage.stage1)
    generator = torch.Generator(device="cpu").manual_seed(options.seed)
    views = run_model(runtime.pipelines.stage1, image, generator=generator, callback=progress, **asdict(stage1_options))
    lap(JobStage.stage1)
    s1 = stage1_files(views)
    # The whole stage-1 set is uploaded before the one record write that lists it.
    outputs = {"input.png": record.input_key, **_upload(runtime, record.id, {f"stage1/{n}": d for n, d in s1.items()})}
    attempt.publish_stage1(outputs)
    lap(JobStage.upload)

    mesh = None
    if not options.stage1_only:
        progress.enter(JobStage.stage2)
        mesh = run_model(runtime.pipelines.stage2, views, generator=generator, callback=progress, **asdict(stage2_options))
        # A stage-2 pipeline that exports the mesh itself reports it as ``export``: time it as such.
        lap(JobStage.stage2, until=progress.entered_at.get(JobStage.export))

    progress.enter(JobStage.export)
    rigged = None
    if mesh is not None and options.rig:
        from pipelines.rig import rig_glb

        rigged = run_model(rig_glb, mesh.glb, views.colors[0])  # the front view the mesh was built from
    s2 = stage2_files(mesh, rigged.glb if rigged else None) if mesh is not None else {}
    extra = run_model(model_outputs, mesh.glb, options.formats, callback=progress) if mesh is not None else None
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
    files = {f"stage2/{name}": data for name, data in s2.items()}  # stage 1 is already uploaded
    files["results.zip"] = archive
    outputs.update(_upload(runtime, record.id, files))
    lap(JobStage.upload)
    timings["total"] = round(sum(timings.values()), 3)
    return outputs, timings
