"""The ``synchuman`` command end to end against the local stack: generate, status, cancel, download."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.lifecycle.conftest import SLOW_OPTIONS, submit

CLI = [sys.executable, "-m", "client.cli"]


def run(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout)


def test_generate_shows_progress_and_prints_where_the_glb_is(stack, sample_photo, tmp_path) -> None:
    out = tmp_path / "out"
    done = run("generate", str(sample_photo), "-o", str(out), "--url", stack.api_url,
               "--option", "texture_size=512", "--option", "simplify=0.95")
    assert done.returncode == 0, done.stderr
    glb = out / "output.glb"
    assert str(glb) in done.stdout.splitlines()
    assert glb.read_bytes()[:4] == b"glTF"
    assert "100/100" in done.stderr  # the progress bar reached the end through both stages
    job_id = done.stdout.split("job ", 1)[1].split()[0]

    status = run("status", job_id, "--url", stack.api_url)
    assert status.returncode == 0 and json.loads(status.stdout)["status"] == "succeeded"

    again = tmp_path / "again"
    download = run("download", job_id, "-o", str(again), "--url", stack.api_url)
    assert download.returncode == 0, download.stderr
    assert (again / "output.glb").read_bytes() == glb.read_bytes()

    refused = run("cancel", job_id, "--url", stack.api_url)
    assert refused.returncode == 1 and "job_not_cancelable" in refused.stderr


def test_cancel_command_cancels_a_job(stack, sample_photo) -> None:
    job = submit(stack, sample_photo, options=SLOW_OPTIONS).json()
    canceled = run("cancel", job["id"], "--url", stack.api_url)
    assert canceled.returncode == 0, canceled.stderr
    assert canceled.stdout.startswith(f"job {job['id']} ")
    assert stack.wait_job(job["id"], timeout=120)["status"] == "canceled"
