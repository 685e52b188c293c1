"""Cancel: queued jobs never run, running jobs stop at their next step, finished jobs refuse."""

from __future__ import annotations

import json

import pytest

from client.stack import wait_until
from tests.support.lifecycle_stack import SLOW_OPTIONS, submit

pytestmark = pytest.mark.slow  # starts servers and workers as real processes


def test_cancel_queued_and_running_jobs(webhook_stack, sample_photo) -> None:
    running = submit(webhook_stack, sample_photo, options=SLOW_OPTIONS).json()
    queued = submit(webhook_stack, sample_photo, webhook_url=webhook_stack.receiver.url("/hooks/queued-cancel")).json()
    webhook_stack.wait_job(running["id"], lambda job: job["status"] == "running")
    # An earlier attempt's leftovers, which the cancel must remove along with anything this attempt wrote.
    leftover = webhook_stack.storage_dir / "jobs" / running["id"] / "stage1" / "color_0.png"
    leftover.parent.mkdir(parents=True, exist_ok=True)
    leftover.write_bytes(b"partial")

    with webhook_stack.client() as http:
        answer = http.post(f"/v1/jobs/{queued['id']}/cancel")
        assert answer.status_code == 200, answer.text
        assert answer.json()["status"] == "canceled"

        answer = http.post(f"/v1/jobs/{running['id']}/cancel")
        assert answer.status_code == 202, answer.text
        assert answer.json()["status"] == "running"

    stopped = webhook_stack.wait_job(running["id"], timeout=60)
    assert stopped["status"] == "canceled"
    assert stopped["stage"] in ("preprocess", "stage1", "stage2")  # stopped at a step, before export
    assert stopped["outputs"] == {}
    files = sorted(p.relative_to(webhook_stack.storage_dir).as_posix() for p in webhook_stack.storage_dir.rglob("*") if p.is_file()
                   and running["id"] in p.as_posix())
    assert files == [f"jobs/{running['id']}/input.png"]

    # The queued job never ran, even once its message reached the (now free) worker.
    after = webhook_stack.wait_job(queued["id"])
    assert after["status"] == "canceled" and after["started_at"] is None and after["attempts"] == 0

    # Its `completed` webhook fired from the API, with the canceled job.
    [call] = wait_until(lambda: webhook_stack.receiver.calls_to("/hooks/queued-cancel"), 30, "the canceled job's webhook")
    assert call.headers["webhook-event"] == "completed"
    assert json.loads(call.body)["status"] == "canceled"

    # Canceling again is idempotent.
    with webhook_stack.client() as http:
        for job in (queued, running):
            again = http.post(f"/v1/jobs/{job['id']}/cancel")
            assert again.status_code == 200 and again.json()["status"] == "canceled"


def test_cancel_finished_job_is_409_and_unknown_is_404(webhook_stack, webhook_job) -> None:
    done = webhook_job
    assert done["status"] == "succeeded"
    with webhook_stack.client() as http:
        answer = http.post(f"/v1/jobs/{done['id']}/cancel")
        assert answer.status_code == 409
        assert answer.json()["error"]["code"] == "job_not_cancelable"
        assert http.get(f"/v1/jobs/{done['id']}").json()["status"] == "succeeded"
        missing = http.post("/v1/jobs/0123456789abcdef0123456789abcdef/cancel")
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "job_not_found"
