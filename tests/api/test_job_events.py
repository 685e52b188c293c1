"""``GET /v1/jobs/{id}/events`` on the real stack, read with httpx while a preview job runs."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from client.events import read_events
from client.sdk import SyncHumanClient
from tests.support.service_stack import FAST_OPTIONS

pytestmark = pytest.mark.slow

ORDER = {"queued": 0, "running": 1, "succeeded": 2, "failed": 2, "canceled": 2}


def submit(api_url: str, photo, **options) -> str:
    response = httpx.post(
        f"{api_url}/v1/jobs",
        files={"image": (photo.name, photo.read_bytes(), "image/png")},
        data={"options": json.dumps({**FAST_OPTIONS, **options})},
    )
    assert response.status_code == 202, response.text
    return response.json()["id"]


def read_stream(api_url: str, job_id: str, headers: dict | None = None) -> tuple[httpx.Response, list[str], list[float]]:
    """The raw lines of the whole stream and the time each event ended."""
    lines, arrivals = [], []
    with httpx.stream("GET", f"{api_url}/v1/jobs/{job_id}/events", headers=headers or {}, timeout=240) as response:
        for line in response.iter_lines():
            lines.append(line)
            if line == "" and lines[-2].startswith("data:"):
                arrivals.append(time.monotonic())
    return response, lines, arrivals


@pytest.fixture(scope="module")
def streamed(s3_stack, sample_photo):
    """A job followed from submission to its end through one stream."""
    job_id = submit(s3_stack.api_url, sample_photo, seed=5)
    response, lines, arrivals = read_stream(s3_stack.api_url, job_id)
    return job_id, response, lines, list(read_events(lines)), arrivals


def test_stream_is_server_sent_events_that_end_with_the_finished_job(s3_stack, streamed):
    job_id, response, lines, events, _ = streamed
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["cache-control"] == "no-cache"
    assert lines[0] == "retry: 1000"
    assert [e.name for e in events[:-1]] == ["update"] * (len(events) - 1)
    done = events[-1]
    assert done.name == "done" and done.job["status"] == "succeeded"
    # The last event is the job exactly as GET answers it (URLs aside: each read mints fresh ones).
    got = httpx.get(f"{s3_stack.api_url}/v1/jobs/{job_id}").json()
    assert {k: v for k, v in done.job.items() if k != "outputs"} == {k: v for k, v in got.items() if k != "outputs"}
    assert set(done.job["outputs"]) == set(got["outputs"])


def test_events_follow_the_job_in_order_one_per_change(streamed):
    _, _, _, events, _ = streamed
    jobs = [e.job for e in events]
    assert len(events) >= 4, [j["status"] for j in jobs]
    assert [ORDER[j["status"]] for j in jobs] == sorted(ORDER[j["status"]] for j in jobs)
    running = [j for j in jobs if j["status"] == "running"]
    assert running, "the running job was seen"
    progress = [j["progress"] for j in running]
    assert progress == sorted(progress)
    stages = [j["stage"] for j in running]
    order = ["preprocess", "stage1", "stage2", "export", "upload"]
    assert [order.index(s) for s in stages] == sorted(order.index(s) for s in stages)
    ids = [e.id for e in events]
    assert len(set(ids)) == len(ids), "no state is sent twice"
    # While stage 2 runs, the events already list the stage-1 views.
    assert any(j["stage"] == "stage2" and "stage1/color_0.png" in j["outputs"] for j in running)


def test_events_come_at_most_about_four_a_second(streamed):
    _, _, _, _, arrivals = streamed
    gaps = [b - a for a, b in zip(arrivals, arrivals[1:])]
    assert len(arrivals) / max(arrivals[-1] - arrivals[0], 1e-3) <= 5.0
    assert min(gaps) > 0.1


def test_reconnecting_resumes_after_the_last_event(s3_stack, sample_photo):
    api = s3_stack.api_url
    job_id = submit(api, sample_photo, seed=6)
    with httpx.stream("GET", f"{api}/v1/jobs/{job_id}/events", timeout=60) as response:
        first = next(read_events(response.iter_lines()))
    _, lines, _ = read_stream(api, job_id, headers={"Last-Event-ID": first.id})
    resumed = list(read_events(lines))
    assert resumed[0].id != first.id, "the state already seen is not sent again"
    assert resumed[-1].name == "done"
    # After the end, a reconnection is told there is nothing more (EventSource stops on 204).
    again = httpx.get(f"{api}/v1/jobs/{job_id}/events", headers={"Last-Event-ID": resumed[-1].id})
    assert again.status_code == 204
    # Without Last-Event-ID a finished job's stream is its one done event.
    _, lines, _ = read_stream(api, job_id)
    assert [e.name for e in read_events(lines)] == ["done"]


def test_unknown_job_is_a_404_error_not_a_stream(s3_stack):
    response = httpx.get(f"{s3_stack.api_url}/v1/jobs/0123456789abcdef/events")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "job_not_found"


def test_sdk_wait_follows_the_stream_and_falls_back_to_polling(s3_stack, sample_photo):
    job_id = submit(s3_stack.api_url, sample_photo, seed=8)
    seen: list[dict] = []
    with SyncHumanClient(s3_stack.api_url) as client:
        job = client.wait(job_id, timeout=240, on_update=seen.append)
        assert job["status"] == "succeeded" and seen[-1] == job
        assert len({(j["status"], j["stage"], j["progress"]) for j in seen}) == len(seen), "one call per change"

    class NoStreams(httpx.BaseTransport):
        """A proxy that knows nothing of event streams: 404 on them, the API for the rest."""

        def __init__(self) -> None:
            self.inner = httpx.HTTPTransport()

        def handle_request(self, request: httpx.Request) -> httpx.Response:
            if request.url.path.endswith("/events"):
                return httpx.Response(404, json={"error": {"code": "not_found", "message": "no route"}})
            return self.inner.handle_request(request)

    with SyncHumanClient(s3_stack.api_url) as client:
        client.http = httpx.Client(base_url=client.base_url, transport=NoStreams(), timeout=30)
        polled = client.wait(job_id, timeout=60, poll_interval=0.1)
    assert polled["status"] == "succeeded"
