"""Signed webhooks end to end: events, signatures, retries, 4xx, the delivery log, redelivery."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from client.sdk import SyncHumanClient, WebhookSignatureError
from client.stack import wait_until
from tests.support.lifecycle_stack import submit

pytestmark = pytest.mark.slow  # starts servers and workers as real processes


def deliveries(webhook_stack, job_id: str) -> list[dict]:
    with webhook_stack.client() as http:
        return http.get(f"/v1/jobs/{job_id}/webhooks").json()["deliveries"]


def test_every_subscribed_event_arrives_signed_with_the_job_as_body(webhook_stack, webhook_job) -> None:
    assert webhook_job["status"] == "succeeded", webhook_job
    calls = wait_until(lambda: len(c := webhook_stack.receiver.calls_to("/hooks/all")) >= 3 and c, 30, "three webhook calls")
    assert [call.headers["webhook-event"] for call in calls] == ["started", "stage1.completed", "completed"]
    ids = set()
    for call in calls:
        SyncHumanClient.verify_webhook(call.headers, call.body, webhook_stack.secret)
        ids.add(call.headers["webhook-id"])
        job = json.loads(call.body)
        assert job["id"] == webhook_job["id"]
    assert len(ids) == 3  # one message id per event
    # Each body is the job as GET shows it when that call is made (so never queued here).
    started, stage1, completed = (json.loads(call.body) for call in calls)
    assert started["status"] in ("running", "succeeded") and started["started_at"] is not None
    assert stage1["status"] in ("running", "succeeded") and stage1["progress"] >= 60.0  # stage 1 done
    assert "stage1/color_0.png" in stage1["outputs"]  # listed before the event fired
    view = httpx.get(stage1["outputs"]["stage1/color_0.png"]["url"], trust_env=False)
    assert view.status_code == 200 and view.content[:4] == b"\x89PNG"
    assert completed["status"] == "succeeded"
    glb = httpx.get(completed["outputs"]["stage2/output.glb"]["url"], trust_env=False)
    assert glb.status_code == 200 and glb.content[:4] == b"glTF"


def test_a_tampered_or_foreign_call_fails_verification(webhook_stack, webhook_job) -> None:
    call = wait_until(lambda: webhook_stack.receiver.calls_to("/hooks/all"), 30, "a webhook call")[0]
    with pytest.raises(WebhookSignatureError):
        SyncHumanClient.verify_webhook(call.headers, call.body.replace(b"running", b"succeeded"), webhook_stack.secret)
    with pytest.raises(WebhookSignatureError):
        SyncHumanClient.verify_webhook(call.headers, call.body, "whsec_" + "A" * 32)


def test_delivery_log_lists_each_event_with_its_attempt(webhook_stack, webhook_job) -> None:
    log = wait_until(
        lambda: (d := deliveries(webhook_stack, webhook_job["id"])) and all(x["state"] == "delivered" for x in d) and len(d) == 3 and d,
        30,
        "three delivered deliveries",
    )
    assert sorted(d["event"] for d in log) == ["completed", "stage1.completed", "started"]
    for delivery in log:
        assert delivery["url"] == webhook_stack.receiver.url("/hooks/all")
        assert [a["status_code"] for a in delivery["attempts"]] == [204]
        assert delivery["next_attempt_at"] is None


def test_receiver_down_then_up_is_delivered_on_retry(webhook_stack, webhook_job) -> None:
    """Redelivery to a receiver that is down: the first attempt fails, a retry gets through."""
    webhook_stack.receiver.stop()
    try:
        with webhook_stack.client() as http:
            answer = http.post(f"/v1/jobs/{webhook_job['id']}/webhooks/redeliver", json={"event": "completed"})
        assert answer.status_code == 202, answer.text
        delivery_id = answer.json()["delivery_id"]

        def failed_once() -> dict | None:
            found = [d for d in deliveries(webhook_stack, webhook_job["id"]) if d["id"] == delivery_id]
            return found[0] if found and found[0]["attempts"] else None

        first = wait_until(failed_once, 30, "the first, failed attempt")
        assert first["state"] == "pending"
        assert first["attempts"][0]["status_code"] is None
        assert "ConnectError" in first["attempts"][0]["error"]
        assert first["next_attempt_at"] > first["attempts"][0]["at"]
    finally:
        webhook_stack.receiver.start()

    def delivered() -> dict | None:
        found = [d for d in deliveries(webhook_stack, webhook_job["id"]) if d["id"] == delivery_id]
        return found[0] if found and found[0]["state"] == "delivered" else None

    done = wait_until(delivered, 30, "delivery on retry")
    assert [a["number"] for a in done["attempts"]] == [1, 2]
    assert [a["status_code"] for a in done["attempts"]] == [None, 204]
    assert done["redelivery_of"] is not None
    [call] = [c for c in webhook_stack.receiver.calls_to("/hooks/all") if c.headers["webhook-id"] == delivery_id]
    SyncHumanClient.verify_webhook(call.headers, call.body, webhook_stack.secret)


@pytest.mark.parametrize(("status", "attempts"), [(410, 1), (404, 1), (503, 3), (429, 3)])
def test_4xx_is_not_retried_but_5xx_and_429_are(webhook_stack, webhook_job, status: int, attempts: int) -> None:
    # The job's URL is /hooks/all; script that path for this redelivery only.
    webhook_stack.receiver.statuses["/hooks/all"] = status
    try:
        with webhook_stack.client() as http:
            answer = http.post(f"/v1/jobs/{webhook_job['id']}/webhooks/redeliver", json={"event": "completed"})
        delivery_id = answer.json()["delivery_id"]

        def finished() -> dict | None:
            found = [d for d in deliveries(webhook_stack, webhook_job["id"]) if d["id"] == delivery_id]
            return found[0] if found and found[0]["state"] == "failed" else None

        wait_until(finished, 30, f"the delivery answered {status} to give up")
    finally:
        webhook_stack.receiver.statuses.pop("/hooks/all", None)
    time.sleep(1.5)  # longer than the first retry delay: a retry would have been logged by now
    [again] = [d for d in deliveries(webhook_stack, webhook_job["id"]) if d["id"] == delivery_id]
    assert [a["status_code"] for a in again["attempts"]] == [status] * attempts
    assert again["next_attempt_at"] is None and again["state"] == "failed"


def test_webhook_to_a_private_or_metadata_address_is_refused_at_submission(webhook_stack, sample_photo) -> None:
    for url in ("http://169.254.169.254/latest/meta-data", "http://10.0.0.7/hook", "http://127.0.0.2:9/hook",
                "ftp://example.com/hook", "http://user:pw@127.0.0.1/hook"):
        answer = submit(webhook_stack, sample_photo, webhook_url=url)
        assert answer.status_code == 422, (url, answer.text)
        assert answer.json()["error"]["code"] == "url_refused", url


def test_unknown_webhook_event_is_refused(webhook_stack, sample_photo) -> None:
    answer = submit(webhook_stack, sample_photo, webhook_url=webhook_stack.receiver.url("/hooks/x"), webhook_events="finished")
    assert answer.status_code == 422
    assert answer.json()["error"]["code"] == "invalid_options"


def test_redeliver_without_a_webhook_is_409(webhook_stack, sample_photo) -> None:
    created = submit(webhook_stack, sample_photo).json()
    with webhook_stack.client() as http:
        answer = http.post(f"/v1/jobs/{created['id']}/webhooks/redeliver")
        http.post(f"/v1/jobs/{created['id']}/cancel")
    assert answer.status_code == 409
    assert answer.json()["error"]["code"] == "no_webhook"
