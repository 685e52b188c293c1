"""The worker's job runner on a real runtime (Redis, local storage, the preview pipeline), no Celery."""

from __future__ import annotations

import io
import uuid

import pytest
from PIL import Image

from shared.jobs import JobRecord, JobStatus, new_job_id, transition
from shared.settings import JobSettings, RedisSettings, Settings, StorageSettings, WorkerSettings
from worker.generation import run_job
from worker.runtime import WorkerRuntime


@pytest.fixture(scope="module")
def runtime(redis_url, tmp_path_factory):
    settings = Settings(
        redis=RedisSettings(url=redis_url, key_prefix=f"gen-{uuid.uuid4().hex[:8]}"),
        storage=StorageSettings(backend="local", local_dir=tmp_path_factory.mktemp("gen-storage"),
                                signing_secret="generation-test-signing-secret"),
        worker=WorkerSettings(pipeline="preview", max_attempts=2, heartbeat_interval_s=1),
        jobs=JobSettings(),
    )
    runtime = WorkerRuntime.start(settings)
    yield runtime
    runtime.stop()


def submit(runtime: WorkerRuntime, image: Image.Image, **options) -> JobRecord:
    job_id = new_job_id()
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    record = JobRecord(id=job_id, input_key=f"jobs/{job_id}/input.png", options=options)
    runtime.storage.put_bytes(record.input_key, buf.getvalue())
    runtime.store.create(record)
    return record


def test_runtime_publishes_a_warm_heartbeat(runtime):
    from shared.heartbeat import list_workers

    [beat] = [w for w in list_workers(runtime.store.redis, runtime.store.keys) if w.worker_id == runtime.heartbeat.worker_id]
    assert beat.pipeline == "preview" and beat.pipeline_version == runtime.pipelines.version
    assert beat.state == "warm" and beat.is_warm
    assert runtime.store.redis.ttl(runtime.store.keys.worker(beat.worker_id)) > 0


def test_job_that_killed_its_worker_twice_is_failed_not_rerun(runtime, sample_photo):
    record = submit(runtime, Image.open(sample_photo))
    for attempt in (1, 2):  # two starts whose workers died
        runtime.store.transition(record.id, JobStatus.running, attempts=attempt)
    final = run_job(runtime, record.id)
    assert final.status is JobStatus.failed
    assert final.error.code == "worker_lost" and not final.error.retryable
    assert final.attempts == 2
    assert runtime.storage.list_keys(f"jobs/{record.id}") == [record.input_key]


def test_redelivered_finished_job_is_a_no_op(runtime, sample_photo):
    record = submit(runtime, Image.open(sample_photo))
    runtime.store.transition(record.id, JobStatus.running, attempts=1)
    done = runtime.store.transition(record.id, JobStatus.succeeded, outputs={"x": "y"})
    assert run_job(runtime, record.id) == done
    assert runtime.store.get(record.id) == done


def test_canceled_queued_job_never_runs(runtime, sample_photo):
    record = submit(runtime, Image.open(sample_photo))
    runtime.store.request_cancel(record.id)
    final = run_job(runtime, record.id)
    assert final.status is JobStatus.canceled and final.attempts == 0


def test_cancel_request_stops_a_running_job_at_its_next_step(runtime, sample_photo):
    record = submit(runtime, Image.open(sample_photo))
    runtime.store.transition(record.id, JobStatus.running, attempts=1)
    runtime.store.request_cancel(record.id)
    final = run_job(runtime, record.id)
    assert final.status is JobStatus.canceled
    assert final.outputs == {}
    assert runtime.storage.list_keys(f"jobs/{record.id}") == [record.input_key]


def test_photo_without_a_person_fails_with_the_pipelines_code(runtime):
    gradient = Image.linear_gradient("L").resize((256, 256)).convert("RGB")
    record = submit(runtime, gradient)
    final = run_job(runtime, record.id)
    assert final.status is JobStatus.failed
    assert final.error.code in ("no_person", "segmenter_unavailable")
    assert final.error.retryable is False and final.error.message
    assert [e.status for e in final.history] == [JobStatus.running, JobStatus.failed]


def test_missing_record_drops_the_message(runtime):
    assert run_job(runtime, "never-created") is None


def test_transition_keeps_the_first_start_time(runtime, sample_photo):
    record = submit(runtime, Image.open(sample_photo))
    first = runtime.store.transition(record.id, JobStatus.running, attempts=1)
    again = transition(first, JobStatus.running, attempts=2)
    assert again.started_at == first.started_at


def test_pipeline_crash_keeps_paths_and_traceback_out_of_the_record(runtime, sample_photo, monkeypatch, caplog):
    import dataclasses

    secret_path = "/opt/models/internal/stage2_weights.safetensors"
    seen_during_stage2: dict[str, str] = {}

    def crashing_stage2(views, **_kwargs):
        # Stage 1 is done: its complete set is already listed on the record.
        seen_during_stage2.update(runtime.store.get(record.id).outputs)
        raise FileNotFoundError(f"[Errno 2] No such file or directory: '{secret_path}'")

    record = submit(runtime, Image.open(sample_photo), texture_size=512)
    monkeypatch.setattr(runtime, "pipelines", dataclasses.replace(runtime.pipelines, stage2=crashing_stage2))
    with caplog.at_level("ERROR", logger="synchuman.worker"):
        final = run_job(runtime, record.id)

    assert final.status is JobStatus.failed
    assert final.error.code == "pipeline_error" and final.error.message
    assert secret_path not in final.error.message and "/" not in final.error.message
    assert "Traceback" not in final.error.message and "FileNotFoundError" not in final.error.message
    assert secret_path in caplog.text  # the details go to the worker's log instead
    # The stage-1 set had been listed and uploaded; the failure removed both.
    assert "stage1/color_0.png" in seen_during_stage2
    assert final.outputs == {}
    assert runtime.storage.list_keys(f"jobs/{record.id}") == [record.input_key]


@pytest.mark.slow  # a whole preview job, then its rig
def test_rig_option_adds_a_rigged_glb_beside_the_model(runtime, sample_photo):
    import json
    import zipfile

    pytest.importorskip("mediapipe")
    record = submit(runtime, Image.open(sample_photo), rig=True, texture_size=512)
    final = run_job(runtime, record.id)
    assert final.status is JobStatus.succeeded, final.error
    assert {"stage2/output.glb", "stage2/rigged.glb"} <= set(final.outputs)
    rigged = runtime.storage.get_bytes(final.outputs["stage2/rigged.glb"])
    assert rigged[:4] == b"glTF" and b'"skins"' in rigged and b"mixamorig:Hips" in rigged
    assert b'"skins"' not in runtime.storage.get_bytes(final.outputs["stage2/output.glb"])
    with zipfile.ZipFile(io.BytesIO(runtime.storage.get_bytes(final.outputs["results.zip"]))) as archive:
        assert archive.read("stage2/rigged.glb") == rigged
        metadata = json.loads(archive.read("results_metadata.json"))
    assert metadata["parameters"]["rig"] is True
    assert set(metadata["timings"]["rig_steps"]) == {"pose", "solid", "skeleton", "weights", "encode"}


def test_rig_of_a_body_without_a_pose_fails_and_keeps_nothing(runtime):
    pytest.importorskip("mediapipe")
    blob = Image.new("RGBA", (300, 600), (0, 0, 0, 0))
    blob.paste(Image.new("RGBA", (200, 500), (90, 140, 200, 255)), (50, 50))  # a blue slab, no person
    record = submit(runtime, blob, rig=True, texture_size=512)
    final = run_job(runtime, record.id)
    assert final.status is JobStatus.failed
    assert final.error.code in ("no_pose", "no_person") and not final.error.retryable
    assert final.outputs == {}
    assert runtime.storage.list_keys(f"jobs/{record.id}") == [record.input_key]
