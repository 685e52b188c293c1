"""No public secrets in a deployment: the API and the workers refuse to start without their own.

Real processes (uvicorn, a Celery worker) started as an operator would, with
one secret missing or set to a value this repository published; each must exit
before it serves or consumes anything, naming the variable to set.
"""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
import yaml

from shared.deployment_secrets import PUBLISHED_SECRETS, SIGNING_SECRET_VAR, WEBHOOK_SECRET_VAR, secret_problems
from shared.settings import Settings
from shared.webhook_signature import generate_secret
from client.stack import REPO_ROOT, free_port
from tests.support.fault_stack import celery_worker, service_env, uvicorn_api
from worker.celery_app import EXIT_CONFIGURATION

pytestmark = pytest.mark.slow  # starts servers and workers as real processes

OLD_WEBHOOK_DEFAULT = "whsec_Y2hhbmdlLW1lLWxvY2FsLXdlYmhvb2stc2VjcmV0"

UNSAFE = {
    "webhook secret missing": (WEBHOOK_SECRET_VAR, None),
    "webhook secret published": (WEBHOOK_SECRET_VAR, OLD_WEBHOOK_DEFAULT),
    "signing secret missing": (SIGNING_SECRET_VAR, None),
    "signing secret published": (SIGNING_SECRET_VAR, "change-me-local-signing-secret"),
}


def unsafe_env(redis_url: str, tmp_path: Path, variable: str, value: str | None) -> dict[str, str]:
    env = service_env(redis_url, tmp_path / "storage")
    if value is None:
        env.pop(variable)
    else:
        env[variable] = value
    return env


@pytest.mark.parametrize("case", ["webhook secret missing", "webhook secret published", "signing secret missing"])
def test_api_refuses_to_start_with_a_missing_or_published_secret(redis_server, tmp_path, case):
    variable, value = UNSAFE[case]
    port = free_port()
    api = uvicorn_api("api", unsafe_env(redis_server.url, tmp_path, variable, value), tmp_path, port).start()
    try:
        assert api.wait(60) != 0, api.output()
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
        assert f"{variable} {'is not set' if value is None else 'is a published example value'}" in api.output()
    finally:
        api.stop()


@pytest.mark.parametrize("case", ["webhook secret published", "signing secret missing"])
def test_worker_refuses_to_start_with_a_missing_or_published_secret(redis_server, tmp_path, case):
    variable, value = UNSAFE[case]
    worker = celery_worker("worker", unsafe_env(redis_server.url, tmp_path, variable, value), tmp_path).start()
    try:
        assert worker.wait(90) == EXIT_CONFIGURATION, worker.output()
        assert variable in worker.output()
        assert "pipelines loaded" not in worker.output()
    finally:
        worker.stop()


def test_secret_rules_name_each_variable_and_spare_s3_the_signing_secret():
    fine = {"webhooks": {"secret": generate_secret(32)}, "storage": {"signing_secret": "a" * 64}}
    assert secret_problems(Settings(**fine)) == []
    for published in PUBLISHED_SECRETS:
        [problem] = secret_problems(Settings(**{**fine, "webhooks": {"secret": published}}))
        assert problem.startswith(WEBHOOK_SECRET_VAR)
    [problem] = secret_problems(Settings(**{**fine, "webhooks": {"secret": "whsec_not*base64"}}))
    assert problem.startswith(f"{WEBHOOK_SECRET_VAR} is malformed")
    both = secret_problems(Settings())
    assert [p.split()[0] for p in both] == [WEBHOOK_SECRET_VAR, SIGNING_SECRET_VAR]
    # S3 presigns with its own credentials: the local signing secret is not needed there.
    assert secret_problems(Settings(webhooks=fine["webhooks"], storage={"backend": "s3"})) == []


def test_compose_requires_every_secret_and_publishes_none():
    text = (REPO_ROOT / "docker-compose.yml").read_text()
    compose = yaml.safe_load(text)
    env = compose["x-service-env"]
    assert re.fullmatch(r"\$\{SYNCHUMAN_WEBHOOK_SECRET:\?[^}]+\}", env["SYNCHUMAN_WEBHOOKS__SECRET"])
    assert re.fullmatch(r"\$\{SYNCHUMAN_S3_SECRET_KEY:\?[^}]+\}", env["SYNCHUMAN_STORAGE__S3_SECRET_KEY"])
    assert compose["services"]["s3"]["environment"]["S3_SECRET_KEY"].startswith("${SYNCHUMAN_S3_SECRET_KEY:?")
    # No secret falls back to a default written in the file.
    assert not re.search(r"SECRET[A-Z_]*:-", text)
    for name in ("api", "webhooks", "worker-gpu0", "worker-gpu1"):
        service_env_ = compose["services"][name]["environment"]
        assert service_env_["SYNCHUMAN_WEBHOOKS__SECRET"] == env["SYNCHUMAN_WEBHOOKS__SECRET"], name
