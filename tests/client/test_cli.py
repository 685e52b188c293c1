"""The ``synchuman`` command end to end against the local stack: generate, status, cancel, download."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.support.lifecycle_stack import SLOW_OPTIONS, submit

pytestmark = pytest.mark.slow  # starts servers and workers as real processes

CLI = [sys.executable, "-m", "client.cli"]


def run(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout)


def test_generate_shows_progress_and_prints_where_the_glb_is(webhook_stack, sample_photo, tmp_path) -> None:
    out = tmp_path / "out"
    done = run("generate", str(sample_photo), "-o", str(out), "--url", webhook_stack.api_url,
               "--option", "texture_size=512", "--option", "simplify=0.95")
    assert done.returncode == 0, done.stderr
    glb = out / "output.glb"
    assert str(glb) in done.stdout.splitlines()
    assert glb.read_bytes()[:4] == b"glTF"
    assert "100/100" in done.stderr  # the progress bar reached the end through both stages
    job_id = done.stdout.split("job ", 1)[1].split()[0]

    status = run("status", job_id, "--url", webhook_stack.api_url)
    assert status.returncode == 0 and json.loads(status.stdout)["status"] == "succeeded"

    again = tmp_path / "again"
    download = run("download", job_id, "-o", str(again), "--url", webhook_stack.api_url)
    assert download.returncode == 0, download.stderr
    assert (again / "output.glb").read_bytes() == glb.read_bytes()

    refused = run("cancel", job_id, "--url", webhook_stack.api_url)
    assert refused.returncode == 1 and "job_not_cancelable" in refused.stderr


def test_cancel_command_cancels_a_job(webhook_stack, sample_photo) -> None:
    job = submit(webhook_stack, sample_photo, options=SLOW_OPTIONS).json()
    canceled = run("cancel", job["id"], "--url", webhook_stack.api_url)
    assert canceled.returncode == 0, canceled.stderr
    assert canceled.stdout.startswith(f"job {job['id']} ")
    assert webhook_stack.wait_job(job["id"], timeout=120)["status"] == "canceled"
