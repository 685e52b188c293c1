"""The webhook retry schedule and which answers are retried."""

from __future__ import annotations

import random

import pytest

from shared.settings import WebhookSettings
from shared.webhooks import is_retryable_status, parse_events, retry_delay, retry_schedule
from shared.errors import InvalidOptionsError


def test_default_schedule_runs_from_5_s_to_24_h_over_about_3_days() -> None:
    schedule = retry_schedule(WebhookSettings())
    assert schedule[0] == 5.0
    assert schedule[-1] == 24 * 3600
    assert all(b >= a for a, b in zip(schedule, schedule[1:]))
    total_days = sum(schedule) / 86400
    assert 2.5 < total_days < 3.5, total_days


def test_delays_grow_exponentially_until_the_cap() -> None:
    settings = WebhookSettings(first_retry_s=2, backoff_factor=3, max_retry_s=100, max_retries=6, jitter=0)
    assert retry_schedule(settings) == [2, 6, 18, 54, 100, 100]
    assert [retry_delay(n, settings) for n in range(1, 7)] == [2, 6, 18, 54, 100, 100]


def test_jitter_spreads_delays_within_its_bounds() -> None:
    settings = WebhookSettings(first_retry_s=10, backoff_factor=2, jitter=0.2)
    rng = random.Random(7)
    delays = [retry_delay(3, settings, rng) for _ in range(500)]
    assert min(delays) >= 40 * 0.8 and max(delays) <= 40 * 1.2
    assert len({round(d, 6) for d in delays}) > 400  # actually random, not a constant


def test_jittered_delay_never_exceeds_the_cap() -> None:
    settings = WebhookSettings(first_retry_s=10, backoff_factor=10, max_retry_s=50, jitter=0.5)
    assert all(retry_delay(5, settings, random.Random(i)) <= 50 for i in range(200))


@pytest.mark.parametrize(
    ("status", "retried"),
    [(500, True), (502, True), (503, True), (301, False), (307, False), (408, True), (429, True),
     (400, False), (401, False), (403, False), (404, False), (410, False), (422, False)],
)
def test_3xx_and_4xx_are_final_except_408_and_429(status: int, retried: bool) -> None:
    assert is_retryable_status(status) is retried


def test_event_names_are_checked_and_default_to_completed() -> None:
    assert parse_events(None) == ["completed"]
    assert parse_events("") == ["completed"]
    assert parse_events("started, stage1.completed,started") == ["started", "stage1.completed"]
    assert parse_events(["completed"]) == ["completed"]
    with pytest.raises(InvalidOptionsError, match="unknown webhook event 'finished'"):
        parse_events("finished")
