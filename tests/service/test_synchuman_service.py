"""The synchuman pipeline through the real queue, on the tiny reference weights (CPU, float32).

A Celery worker with ``SYNCHUMAN_WORKER__PIPELINE=synchuman`` loads the tiny
random-weight checkpoints of ``../shared/parity/synchuman`` laid out as the
README tells operators to lay out the released ones; everything else is the
real stack (redis-server, uvicorn, local storage) and every check goes through
HTTP.

The reference golden used is ``pipeline_run_model_3steps``: the official
stage 1 for 3 steps with seed 43 and guidance 3, decoded.  The 50-step golden
would cost 3-4 minutes of CPU in every CI run for the same code path; the
3-step one checks the same draw order, conditioning, sampler, decoders and
PNG rounding in about 10 s.
"""

from __future__ import annotations

import io
import json
import signal
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import redis
from PIL import Image
from safetensors.torch import load_file

from client.stack import wait_until
from tests.support.service_stack import MESH_PREVIEWS, Stack, service_env
from tests.support.gltf_validation import validate_glb
from shared.jobs import STAGE_PROGRESS, JobStage
from tests.service.synchuman_weights import assemble_weights
from worker.celery_app import EXIT_PIPELINES_FAILED

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]  # minutes on a loaded 2-core machine

GOLDEN_OPTIONS = {
    "seed": 43, "stage1_steps": 3, "guidance_scale": 3.0, "stage2_steps": 2, "texture_size": 512, "simplify": 0.95,
}
"""The 3-step golden's seed, steps and guidance; a short stage 2, a small texture on a simplified mesh."""
STAGE1_FILES = {f"stage1/{kind}_{i}.png" for kind in ("color", "normal") for i in range(5)} | {
    "input.png", "stage1/input.png", "stage1/latent.npz", "stage1/voxel.ply",
}
ALL_FILES = STAGE1_FILES | {"stage2/output.glb", "stage2/output_mesh.ply", "results.zip"} | MESH_PREVIEWS
TERMINAL = ("succeeded", "failed", "canceled")


@pytest.fixture(scope="module")
def weights_dir(parity_dir, tmp_path_factory) -> Path:
    return assemble_weights(parity_dir, tmp_path_factory.mktemp("synchuman-weights"))


@pytest.fixture(scope="module")
def parity_photo(parity_dir) -> bytes:
    return (parity_dir / "onestage" / "input.png").read_bytes()


def synchuman_env(redis_url: str, prefix: str, weights: Path, storage_dir: Path, **extra: str) -> dict[str, str]:
    return service_env(
        redis_url,
        prefix,
        storage={"backend": "local", "local_dir": str(storage_dir), "signing_secret": f"{prefix}-secret"},
        extra={
            "SYNCHUMAN_WORKER__PIPELINE": "synchuman",
            "SYNCHUMAN_WORKER__WEIGHTS_DIR": str(weights),
            "SYNCHUMAN_WORKER__DEVICE": "cpu",
            "SYNCHUMAN_WORKER__DTYPE": "float32",
            **extra,
        },
    )


@pytest.fixture(scope="module")
def synchuman_stack(redis_url, weights_dir, tmp_path_factory) -> Iterator[Stack]:
    """The API and one warm synchuman worker on local storage."""
    root = tmp_path_factory.mktemp("synchuman-stack")
    (root / "logs").mkdir()
    stack = Stack(env=synchuman_env(redis_url, "synchuman", weights_dir, root / "storage"), logs=root / "logs")
    try:
        stack.start_api()
        stack.start_worker("sh1")
        stack.wait_ready(timeout=300)
        yield stack
    finally:
        stack.stop()


HTTP = httpx.Client(timeout=30)
"""One connection pool for every request of this module (a client per request costs CPU)."""


def submit(stack: Stack, photo: bytes, options: dict) -> str:
    response = HTTP.post(
        f"{stack.api_url}/v1/jobs",
        files={"image": ("person.png", photo, "image/png")},
        data={"options": json.dumps(options)},
        timeout=30,
    )
    assert response.status_code == 202, response.text
    return response.json()["id"]


def get_job(stack: Stack, job_id: str) -> dict:
    return HTTP.get(f"{stack.api_url}/v1/jobs/{job_id}").json()


def follow(stack: Stack, job_id: str, timeout: float = 1500) -> tuple[dict, list[dict]]:
    """Poll until the job ends; returns the final job and every state seen on the way."""
    seen: list[dict] = []

    def finished():
        seen.append(get_job(stack, job_id))
        return seen[-1] if seen[-1]["status"] in TERMINAL else None

    return wait_until(finished, timeout, f"job {job_id} to finish", interval=0.2), seen


def download_all(job: dict) -> dict[str, bytes]:
    files = {}
    for name, output in job["outputs"].items():
        response = HTTP.get(output["url"], follow_redirects=True)
        assert response.status_code == 200, (name, response.status_code)
        files[name] = response.content
    return files


def png_levels(data: bytes) -> np.ndarray:
    """A stage-1 PNG as (3, 96, 96) levels, sampled every 8 pixels like the golden."""
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.int16)[::8, ::8].transpose(2, 0, 1)


def coords_set(latent_npz: bytes) -> set[tuple[int, ...]]:
    coords = np.load(io.BytesIO(latent_npz))["coords"]
    assert coords.dtype == np.float32 and coords.shape[1] == 4
    return {tuple(int(v) for v in row) for row in coords}


@pytest.fixture(scope="module")
def golden_job(synchuman_stack, parity_photo) -> tuple[dict, list[dict], dict[str, bytes]]:
    job_id = submit(synchuman_stack, parity_photo, GOLDEN_OPTIONS)
    job, seen = follow(synchuman_stack, job_id)
    assert job["status"] == "succeeded", job["error"]
    return job, seen, download_all(job)


def test_synchuman_job_reproduces_the_reference_views_and_occupancy(golden_job, parity_dir):
    job, _, files = golden_job
    assert set(files) == ALL_FILES
    assert job["pipeline"]["name"] == "synchuman"
    golden = load_file(parity_dir / "onestage" / "golden" / "pipeline_run_model_3steps.safetensors")
    reference = ((golden["final.vae_decoded_stride8"] / 2 + 0.5).clamp(0, 1) * 255 + 0.5).floor().numpy()
    normals = np.stack([png_levels(files[f"stage1/normal_{i}.png"]) for i in range(5)])
    colours = np.stack([png_levels(files[f"stage1/color_{i}.png"]) for i in range(5)])
    # Views 1-4 as decoded; view 0 has the official overrides (the input as colour, the face in the normal).
    assert np.abs(normals[1:] - reference[1:5]).max() <= 1
    assert np.abs(colours[1:] - reference[6:10]).max() <= 1
    outside_face = np.ones((96, 96), dtype=bool)
    outside_face[0:32, 32:64] = False  # rows 0:256, cols 256:512 at stride 8
    assert np.abs(normals[0] - reference[0])[:, outside_face].max() <= 1
    expected = {tuple(int(v) for v in row) for row in golden["final.coords"].tolist()}
    assert coords_set(files["stage1/latent.npz"]) == expected


def test_synchuman_job_reports_rising_progress_and_a_valid_glb(golden_job):
    job, seen, files = golden_job
    progress = [state["progress"] for state in seen]
    assert progress == sorted(progress), progress
    assert job["progress"] == 100
    stages = [state["stage"] for state in seen if state["status"] == "running"]
    assert "stage1" in stages or "stage2" in stages
    assert set(job["timings"]) >= {"preprocess", "stage1", "stage2", "export", "upload"}
    report = validate_glb(files["stage2/output.glb"])
    assert report["issues"]["numErrors"] == 0, report["issues"]["messages"][:5]
    with zipfile.ZipFile(io.BytesIO(files["results.zip"])) as archive:
        metadata = json.loads(archive.read("results_metadata.json"))
        assert {"stage2/output.glb", "stage1/normal_0.png"} <= set(archive.namelist())
    assert metadata["pipeline"]["name"] == "synchuman"
    assert metadata["parameters"]["seed"] == 43 and metadata["parameters"]["stage1_steps"] == 3


def test_second_job_on_the_warm_worker_differs_without_reloading(synchuman_stack, golden_job, parity_photo):
    _, _, first = golden_job
    job_id = submit(synchuman_stack, parity_photo, {**GOLDEN_OPTIONS, "seed": 7})
    job, _ = follow(synchuman_stack, job_id)
    assert job["status"] == "succeeded", job["error"]
    second = download_all(job)
    assert second["stage1/color_1.png"] != first["stage1/color_1.png"]
    assert coords_set(second["stage1/latent.npz"]) != coords_set(first["stage1/latent.npz"])
    # One worker process, loaded once, served both jobs.
    def workers_after_two_jobs():
        workers = HTTP.get(f"{synchuman_stack.api_url}/readyz").json()["workers"]
        return workers if workers and workers[0]["jobs_done"] >= 2 else None

    [worker] = wait_until(workers_after_two_jobs, 30, "the heartbeat to count both jobs", interval=0.5)
    assert worker["pipeline"] == "synchuman"
    log = (synchuman_stack.workdir / "worker-sh1.log").read_text()
    assert log.count("loading pipelines") == 1


def test_opaque_jpeg_of_a_person_is_cut_out_and_succeeds(synchuman_stack, sample_photos):
    """The most common upload, a JPEG without transparency, goes through the person cut-out to stage 1."""
    from bench.person_photos import BACKGROUNDS, composite, with_margin
    from tests.support.requirements import require_pose_model

    require_pose_model()
    person = with_margin(Image.open(sample_photos[0]).convert("RGBA"))
    photo = composite(person, BACKGROUNDS["photo"](*person.size), "photo").photo
    buffer = io.BytesIO()
    photo.save(buffer, format="JPEG", quality=90)
    response = HTTP.post(
        f"{synchuman_stack.api_url}/v1/jobs",
        files={"image": ("person.jpg", buffer.getvalue(), "image/jpeg")},
        data={"options": json.dumps({**GOLDEN_OPTIONS, "stage1_only": True})},
    )
    assert response.status_code == 202, response.text
    job, _ = follow(synchuman_stack, response.json()["id"])
    assert job["status"] == "succeeded", job["error"]
    assert job["timings"]["preprocess"] > 0
    canvas = HTTP.get(job["outputs"]["stage1/input.png"]["url"], follow_redirects=True).content
    alpha = np.asarray(Image.open(io.BytesIO(canvas)).getchannel("A"))
    assert 0.1 < (alpha > 127).mean() < 0.9  # the person, cut out of the photograph


def stage1_step(progress: float, total: int) -> float:
    """The stage-1 step a job's overall progress stands for."""
    start, end = STAGE_PROGRESS[JobStage.stage1]
    return (progress - start) / (end - start) * total


def test_cancel_during_stage1_stops_within_one_step_and_frees_the_worker(synchuman_stack, parity_photo):
    steps = 50
    job_id = submit(synchuman_stack, parity_photo, {**GOLDEN_OPTIONS, "stage1_steps": steps, "seed": 11})

    def sampling():
        job = get_job(synchuman_stack, job_id)
        return job if job["stage"] == "stage1" and stage1_step(job["progress"], steps) >= 2 else None

    wait_until(sampling, 300, "stage 1 to run a few steps", interval=0.05)
    response = HTTP.post(f"{synchuman_stack.api_url}/v1/jobs/{job_id}/cancel")
    assert response.status_code == 202, response.text
    at_cancel = stage1_step(get_job(synchuman_stack, job_id)["progress"], steps)
    job, _ = follow(synchuman_stack, job_id, timeout=120)
    assert job["status"] == "canceled"
    # The step running when the cancel arrived finished, and at most the next one began.
    assert stage1_step(job["progress"], steps) - at_cancel <= 1.01, (at_cancel, job["progress"])
    assert job["outputs"] == {}
    # The worker is free again: the next job runs to the end.
    next_job, _ = follow(synchuman_stack, submit(synchuman_stack, parity_photo, {**GOLDEN_OPTIONS, "stage1_only": True}))
    assert next_job["status"] == "succeeded", next_job["error"]


def test_killed_synchuman_worker_job_finishes_once_on_a_new_worker(redis_url, weights_dir, parity_photo, tmp_path):
    (tmp_path / "logs").mkdir()
    env = synchuman_env(
        redis_url, "shcrash", weights_dir, tmp_path / "storage",
        SYNCHUMAN_WORKER__VISIBILITY_TIMEOUT_S="3", SYNCHUMAN_WORKER__UNACKED_RESTORE_INTERVAL_S="1",
    )
    stack = Stack(env=env, logs=tmp_path / "logs")
    try:
        stack.start_api()
        first = stack.start_worker("first")
        stack.wait_ready(timeout=300)
        job_id = submit(stack, parity_photo, GOLDEN_OPTIONS)
        wait_until(lambda: get_job(stack, job_id)["stage"] == "stage1", 300, "stage 1 to start", interval=0.05)
        first.signal(signal.SIGKILL)
        first.wait(30)
        stack.start_worker("second")
        job, _ = follow(stack, job_id)
        assert job["status"] == "succeeded", job["error"]
        assert job["attempts"] == 2
        client = redis.Redis.from_url(redis_url)
        record = json.loads(client.get(f"shcrash:job:{job_id}"))
        # Redelivered by the broker (a 3 s visibility timeout here), or first recovered from the dead
        # worker's heartbeats (back in the queue): either way started twice and finished once.
        history = [(e["status"], e["attempt"]) for e in record["history"]]
        assert history in ([("running", 1), ("running", 2), ("succeeded", 2)],
                           [("running", 1), ("queued", 1), ("running", 2), ("succeeded", 2)])
        assert client.llen("shcrash:celery:gpu") == 0  # nothing left to run it a second time
        client.close()
        assert set(download_all(job)) == ALL_FILES
        stored = sorted(p.relative_to(tmp_path / "storage" / "jobs" / job_id).as_posix()
                        for p in (tmp_path / "storage" / "jobs" / job_id).rglob("*") if p.is_file())
        assert stored == sorted(ALL_FILES)
    finally:
        stack.stop()


def test_worker_with_one_weights_file_missing_refuses_to_start_naming_it(redis_url, parity_dir, tmp_path):
    missing = "SecondStage/slat_decoder_mesh/model.safetensors"
    weights = assemble_weights(parity_dir, tmp_path / "weights", omit=missing)
    (tmp_path / "logs").mkdir()
    stack = Stack(env=synchuman_env(redis_url, "shmissing", weights, tmp_path / "storage"), logs=tmp_path / "logs")
    try:
        worker = stack.start_worker("incomplete")
        assert worker.wait(120) == EXIT_PIPELINES_FAILED
        log = (tmp_path / "logs" / "worker-incomplete.log").read_text()
        assert "pipelines failed to load" in log
        assert "slat_decoder_mesh/model.safetensors" in log
    finally:
        stack.stop()
