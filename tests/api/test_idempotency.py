"""Idempotency-Key on POST /v1/jobs: same request → same job; different request → 422."""

from __future__ import annotations

import uuid

import pytest

from tests.support.lifecycle_stack import FAST_OPTIONS, submit

pytestmark = pytest.mark.slow  # starts servers and workers as real processes


def test_resubmit_with_same_key_returns_the_same_job(webhook_stack, sample_photo) -> None:
    key = {"Idempotency-Key": f"order-{uuid.uuid4()}"}
    first = submit(webhook_stack, sample_photo, headers=key)
    assert first.status_code == 202, first.text
    again = submit(webhook_stack, sample_photo, headers=key)
    assert again.status_code == 200, again.text
    assert again.json()["id"] == first.json()["id"]
    assert again.headers["location"] == f"/v1/jobs/{first.json()['id']}"

    different = submit(webhook_stack, sample_photo, headers=key, options={**FAST_OPTIONS, "seed": 1})
    assert different.status_code == 422
    assert different.json()["error"]["code"] == "idempotency_key_reused"

    other_key = submit(webhook_stack, sample_photo, headers={"Idempotency-Key": f"order-{uuid.uuid4()}"})
    assert other_key.status_code == 202 and other_key.json()["id"] != first.json()["id"]
    with webhook_stack.client() as http:
        for job_id in (first.json()["id"], other_key.json()["id"]):
            http.post(f"/v1/jobs/{job_id}/cancel")


def test_reordered_options_are_the_same_request(webhook_stack, sample_photo) -> None:
    key = {"Idempotency-Key": f"order-{uuid.uuid4()}"}
    first = submit(webhook_stack, sample_photo, headers=key, options={"seed": 5, "texture_size": 512})
    again = submit(webhook_stack, sample_photo, headers=key, options={"texture_size": 512, "seed": 5})
    assert (first.status_code, again.status_code) == (202, 200)
    assert first.json()["id"] == again.json()["id"]
    with webhook_stack.client() as http:
        http.post(f"/v1/jobs/{first.json()['id']}/cancel")


def test_key_too_long_is_refused(webhook_stack, sample_photo) -> None:
    answer = submit(webhook_stack, sample_photo, headers={"Idempotency-Key": "k" * 300})
    assert answer.status_code == 422
    assert answer.json()["error"]["code"] == "invalid_idempotency_key"
