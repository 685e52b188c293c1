"""The job-read fast path (``api.fast_reads``) answers exactly what the documented route answers.

The same requests go to two applications on one Redis: one with the fast path,
one without (``api.fast_job_reads=false``, so FastAPI's route answers).  Status,
headers (but the per-request id) and body must be byte-for-byte equal, with
authentication off and on: queued and succeeded jobs, unknown jobs, another
tenant's job, a missing key, a key that does not exist.  Download URLs embed their expiry, so the clock is
frozen for the comparison.
"""

from __future__ import annotations

import asyncio

import httpx
import pytest

from api.app import create_app
from shared.auth import KeyStore
from shared.job_store import JobStore
from shared.jobs import JobRecord, JobStatus, new_job_id, transition
from shared.settings import ApiSettings, AuthSettings, RedisSettings, Settings, StorageSettings, WebhookSettings
from shared.webhook_signature import generate_secret

PREFIX = "fast-reads"
ARTIFACTS = ["input.png", "results.zip", "stage2/output.glb", "stage2/output_mesh.ply"] + [
    f"stage1/color_{i}.png" for i in range(5)
]


def settings(redis_url: str, storage_dir, *, auth: bool, fast: bool) -> Settings:
    return Settings(
        redis=RedisSettings(url=redis_url, key_prefix=PREFIX),
        storage=StorageSettings(backend="local", local_dir=storage_dir, signing_secret="fast-reads-secret"),
        auth=AuthSettings(enabled=auth),
        api=ApiSettings(fast_job_reads=fast),
        webhooks=WebhookSettings(secret=generate_secret()),
    )


def seed_jobs(store: JobStore, owner: str | None) -> tuple[str, str]:
    """A queued job and a succeeded one with its artifacts; their ids."""
    queued = JobRecord(id=new_job_id(), input_key="jobs/q/input.png", owner=owner)
    store.create(queued)
    done = JobRecord(id=new_job_id(), input_key="jobs/d/input.png", owner=owner)
    store.create(done)
    running = store.update(done.id, lambda r: transition(r, JobStatus.running, attempts=1, worker_id="w"))
    outputs = {name: f"jobs/{done.id}/{name}" for name in ARTIFACTS}
    store.update(done.id, lambda r: transition(running, JobStatus.succeeded, outputs=outputs, timings={"total": 1.5}))
    return queued.id, done.id


async def answers(app, requests: list[tuple[str, dict[str, str]]]) -> list[httpx.Response]:
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as client:
            return [await client.get(path, headers=headers) for path, headers in requests]


def comparable(response: httpx.Response) -> tuple[int, list[tuple[str, str]], bytes]:
    headers = [(k, v) for k, v in response.headers.multi_items() if k != "x-request-id"]
    return response.status_code, headers, response.content


@pytest.mark.parametrize("auth", [False, True], ids=["auth-off", "auth-on"])
def test_fast_path_answers_byte_for_byte_what_the_route_answers(redis_client, redis_server, tmp_path, monkeypatch, auth):
    import shared.storage.local

    monkeypatch.setattr(shared.storage.local.time, "time", lambda: 1_800_000_000.0)
    store = JobStore(redis_client, prefix=PREFIX, retention_s=3600)
    headers: dict[str, dict[str, str]] = {"anonymous": {}}
    owner = None
    if auth:
        keys = KeyStore(redis_client, prefix=PREFIX)
        alice, bob = keys.create("alice"), keys.create("bob")
        owner = alice.key.key_id
        headers = {"alice": {"Authorization": f"Bearer {alice.token}"},
                   "bob": {"Authorization": f"Bearer {bob.token}"}, "anonymous": {},
                   "unknown key": {"Authorization": f"Bearer {alice.token[:-4]}xxxx"}}
    queued, done = seed_jobs(store, owner)
    requests = [(f"/v1/jobs/{job}", h) for job in (queued, done, "no-such-job") for h in headers.values()]

    fast = asyncio.run(answers(create_app(settings(redis_server.url, tmp_path, auth=auth, fast=True)), requests))
    route = asyncio.run(answers(create_app(settings(redis_server.url, tmp_path, auth=auth, fast=False)), requests))

    assert [comparable(r) for r in fast] == [comparable(r) for r in route]
    statuses = [r.status_code for r in fast]
    if auth:  # alice reads her jobs; bob gets 404, as for a job that does not exist; no key or an unknown one: 401
        assert statuses == [200, 404, 401, 401, 200, 404, 401, 401, 404, 404, 401, 401]
    else:
        assert statuses == [200, 200, 404]
    body = fast[1 if not auth else 4].json()
    assert body["status"] == "succeeded" and set(body["outputs"]) == set(ARTIFACTS)
    assert fast[0].json()["queue_position"] == 1 and fast[0].json()["eta_s"] is not None
