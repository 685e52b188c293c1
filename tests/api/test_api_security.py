"""API keys, tenant isolation, logs and CORS on a real stack with authentication on.

The keys are minted with the operator command (``synchuman keys``) in a
subprocess, as an operator would; the API runs under uvicorn, the worker under
Celery, both on Redis.
"""

from __future__ import annotations

import json
import subprocess
import sys
from urllib.parse import urlsplit

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from client.stack import REPO_ROOT, RedisServer
from tests.support.fault_stack import Stack

METRICS_TOKEN = "scraper-token-3f9a"

pytestmark = pytest.mark.slow


def keys_cli(stack: Stack, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "client.cli", "keys", *args], env=stack.env, cwd=REPO_ROOT,
        capture_output=True, text=True, timeout=60,
    )


def new_key(stack: Stack, name: str) -> dict:
    done = keys_cli(stack, "--json", "create", "--name", name)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("auth-stack")
    redis_server = RedisServer(workdir).start()
    stack = Stack(workdir, redis_server, SYNCHUMAN_AUTH__ENABLED="true",
                  SYNCHUMAN_AUTH__METRICS_TOKEN=METRICS_TOKEN).start_api()
    stack.start_worker()
    stack.wait_warm()
    yield stack
    stack.stop()
    redis_server.stop()


@pytest.fixture(scope="module")
def alice(stack):
    return new_key(stack, "alice")


@pytest.fixture(scope="module")
def bob(stack):
    return new_key(stack, "bob")


@pytest.fixture(scope="module")
def alices_job(stack, alice):
    job_id = stack.submit(token=alice["token"])
    stack.wait_terminal(job_id)
    return job_id


def auth(key: dict) -> dict:
    return {"Authorization": f"Bearer {key['token']}"}


def test_v1_needs_a_valid_key_and_health_checks_do_not(stack, alice):
    for headers in ({}, {"Authorization": "Bearer shk_0000_forged"}, {"Authorization": alice["token"]}):
        response = httpx.get(f"{stack.api_url}/v1/jobs/abc", headers=headers)
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "unauthorized"
        assert response.headers["www-authenticate"] == "Bearer"
    assert stack.submit(expect=401) == ""
    assert httpx.get(f"{stack.api_url}/healthz").status_code == 200
    assert httpx.get(f"{stack.api_url}/metrics").status_code == 401


def test_keys_are_listed_without_secrets_and_revocation_is_immediate(stack):
    carol = new_key(stack, "carol")
    assert stack.submit(token=carol["token"])
    listed = keys_cli(stack, "--json", "list")
    assert listed.returncode == 0
    entries = {k["key_id"]: k for k in json.loads(listed.stdout)}
    assert entries[carol["key_id"]]["name"] == "carol" and carol["token"] not in listed.stdout
    assert "digest" not in entries[carol["key_id"]]
    assert keys_cli(stack, "revoke", carol["key_id"]).returncode == 0
    assert stack.submit(token=carol["token"], expect=401) == ""
    assert keys_cli(stack, "revoke", "no-such-key").returncode == 1


def test_another_keys_job_does_not_exist_for_it(stack, alice, bob, alices_job):
    base = f"{stack.api_url}/v1/jobs"
    assert httpx.get(f"{base}/{alices_job}", headers=auth(alice)).json()["status"] == "succeeded"
    missing = httpx.get(f"{base}/0123456789abcdef", headers=auth(bob))
    assert missing.status_code == 404
    for method, path in [("GET", ""), ("GET", "/result"), ("POST", "/cancel"), ("GET", "/webhooks"),
                         ("POST", "/webhooks/redeliver"), ("GET", "/artifacts/stage2/output.glb"), ("GET", "/events")]:
        response = httpx.request(method, f"{base}/{alices_job}{path}", headers=auth(bob))
        assert response.status_code == 404, (method, path, response.text)
        assert response.json()["error"]["code"] == missing.json()["error"]["code"]
        assert alices_job in response.json()["error"]["message"] or "job" in response.json()["error"]["message"]
    assert httpx.get(f"{base}/{alices_job}", headers=auth(alice)).json()["status"] == "succeeded"


def test_event_stream_needs_the_owners_key(stack, alice, alices_job):
    url = f"{stack.api_url}/v1/jobs/{alices_job}/events"
    assert httpx.get(url).status_code == 401
    response = httpx.get(url, headers=auth(alice))
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
    assert "event: done" in response.text and '"status":"succeeded"' in response.text


def test_signed_file_urls_work_without_a_key_for_one_file_only(stack, alice, alices_job):
    job = httpx.get(f"{stack.api_url}/v1/jobs/{alices_job}", headers=auth(alice)).json()
    url = job["outputs"]["stage2/output.glb"]["url"]
    download = httpx.get(url)
    assert download.status_code == 200 and download.content[:4] == b"glTF"
    parts = urlsplit(url)
    other_file = url.replace("stage2/output.glb", "results.zip")
    other_job = url.replace(alices_job, "0" * len(alices_job))
    for tampered in (other_file, other_job, url.replace("expires=", "expires=9")):
        assert httpx.get(tampered).status_code in (403, 404), tampered
    assert parts.query  # the signature travels in the query, never in logs (see below)


def test_metrics_count_the_finished_job_and_the_warm_worker(stack, alice, alices_job):
    # The numbers cover every tenant: an API key cannot read them, only the scraper's token.
    refused = httpx.get(f"{stack.api_url}/metrics", headers=auth(alice))
    assert refused.status_code == 401 and "metrics_token" in refused.json()["error"]["message"]
    response = httpx.get(f"{stack.api_url}/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    assert samples[("synchuman_jobs", (("status", "succeeded"),))] >= 1
    assert samples[("synchuman_stage_run_seconds_count", (("stage", "stage1"),))] >= 1
    assert samples[("synchuman_job_wait_seconds_count", ())] >= 1
    assert samples[("synchuman_workers", ())] == 1
    warm = [v for (name, _), v in samples.items() if name == "synchuman_worker_warm"]
    assert warm == [1]


def test_every_request_has_an_id_and_logs_are_json_without_secrets(stack, alice, alices_job):
    response = httpx.get(f"{stack.api_url}/v1/jobs/{alices_job}", headers={**auth(alice), "X-Request-ID": "trace-12345678"})
    assert response.headers["x-request-id"] == "trace-12345678"
    fresh = httpx.get(f"{stack.api_url}/healthz").headers["x-request-id"]
    assert len(fresh) == 32
    api_lines = [json.loads(line) for line in stack.api.output().splitlines() if line.startswith("{")]
    assert any(line.get("request_id") == "trace-12345678" and line["msg"] == "request" for line in api_lines)
    worker_lines = [json.loads(line) for line in stack.workers[0].output().splitlines() if line.startswith("{")]
    assert any(line.get("job_id") == alices_job for line in worker_lines)
    everything = stack.api.output() + stack.workers[0].output()
    assert alice["token"] not in everything and "Traceback" not in everything
    assert "signature=" not in everything.replace("signature=[redacted]", "")


def test_cors_is_off_by_default(stack):
    preflight = httpx.options(
        f"{stack.api_url}/v1/jobs",
        headers={"Origin": "https://elsewhere.example", "Access-Control-Request-Method": "POST"},
    )
    assert "access-control-allow-origin" not in preflight.headers
