"""Fixtures shared by every test folder; the helpers behind them live in ``tests/support/``.

``shared_dir`` is the folder of design notes, parity fixtures and sample photos
that lies beside a developer's or CI's checkout (``../shared``).  A user's
clone does not have it: tests that need it skip there, but fail under CI=true,
where a skipped parity test would hide a regression
(``tests.support.requirements``).

Two Redis servers serve two kinds of test: ``redis_server`` (with
``redis_client``, emptied before each test) for code that runs in the test's
own process, and ``redis_url``, never emptied, shared by the stacks of real
processes, each under its own key prefix.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from client.stack import RedisServer, SeaweedS3
from tests.support.lifecycle_stack import LifecycleStack, start_lifecycle_stack, submit
from tests.support.requirements import require_shared
from tests.support.service_stack import (
    MAX_PIXELS,
    MAX_UPLOAD_BYTES,
    WEBHOOK_SECRET,
    LocalWebServer,
    Stack,
    s3_storage_env,
)
from tests.support.service_stack import service_env as stack_env
from tests.support.webhook_receiver import WebhookReceiver


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    return require_shared()


@pytest.fixture(scope="session")
def parity_dir() -> Path:
    return require_shared("parity", "synchuman")


@pytest.fixture(scope="session")
def sample_photos() -> list[Path]:
    folder = require_shared("samples")
    photos = sorted(folder.glob("*.png"))
    assert photos, "no sample photos in ../shared/samples"
    return photos


@pytest.fixture(scope="session")
def sample_photo(sample_photos) -> Path:
    return sample_photos[0]


# Redis for code under test in this process: one server per session, emptied per test.


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis-unit"), aof=False).start()
    yield server
    server.stop()


@pytest.fixture()
def redis_client(redis_server):
    import redis

    client = redis.Redis.from_url(redis_server.url)
    client.flushdb()
    yield client
    client.close()


# Servers shared by the stacks of real processes (tests.support.service_stack).


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory) -> Iterator[str]:
    server = RedisServer(tmp_path_factory.mktemp("redis"), aof=False).start()
    yield server.url
    server.stop()


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory) -> Iterator[SeaweedS3]:
    server = SeaweedS3(tmp_path_factory.mktemp("seaweedfs")).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def s3_stack(redis_url, s3_server, tmp_path_factory) -> Iterator[Stack]:
    """The API and one preview worker on the S3 backend (SeaweedFS)."""
    logs = tmp_path_factory.mktemp("s3-stack-logs")
    limits = {
        "SYNCHUMAN_API__MAX_UPLOAD_BYTES": str(MAX_UPLOAD_BYTES),
        "SYNCHUMAN_API__MAX_PIXELS": str(MAX_PIXELS),
        "SYNCHUMAN_API__URL_FETCH_ALLOW_HOSTS": '["localhost"]',
        "SYNCHUMAN_WEBHOOKS__SECRET": WEBHOOK_SECRET,
        "SYNCHUMAN_WEBHOOKS__MAX_RETRIES": "1",
        "SYNCHUMAN_WEBHOOKS__ALLOW_HOSTS": '["localhost"]',
    }
    env = stack_env(redis_url, "e2e", storage=s3_storage_env(s3_server, "e2e-artifacts"), extra=limits)
    stack = Stack(env=env, logs=logs)
    try:
        stack.start_api()
        stack.start_worker()
        stack.wait_ready()
        yield stack
    finally:
        stack.stop()


@pytest.fixture(scope="session")
def web_server(sample_photo) -> Iterator[LocalWebServer]:
    """Serves the sample photo at ``/photo.png`` and records the webhooks POSTed to it."""
    server = LocalWebServer(photo=sample_photo.read_bytes()).start()
    yield server
    server.stop()


# The webhook stack (tests.support.lifecycle_stack): a compressed retry schedule and a receiver.


@pytest.fixture(scope="session")
def receiver() -> Iterator[WebhookReceiver]:
    server = WebhookReceiver().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def lifecycle_stack(tmp_path_factory, receiver) -> Iterator[LifecycleStack]:
    workdir = tmp_path_factory.mktemp("lifecycle")
    redis_server = RedisServer(workdir, aof=False).start()
    try:
        stack = start_lifecycle_stack(workdir, redis_server.url, receiver)
        try:
            yield stack
        finally:
            stack.services.stop()
    finally:
        redis_server.stop()


@pytest.fixture(scope="module")
def webhook_job(lifecycle_stack, sample_photo) -> dict:
    """A job subscribed to every webhook event (at ``/hooks/all``), run to success.

    One per module: a signature is refused once its call is five minutes old, and other
    modules run between two that use the job."""
    lifecycle_stack.receiver.forget("/hooks/all")
    created = submit(
        lifecycle_stack,
        sample_photo,
        webhook_url=lifecycle_stack.receiver.url("/hooks/all"),
        webhook_events="started,stage1.completed,completed",
    )
    assert created.status_code == 202, created.text
    return lifecycle_stack.wait_job(created.json()["id"])


@pytest.fixture()
def webhook_stack(lifecycle_stack, request) -> Iterator[LifecycleStack]:
    """The session's stack, with its process logs attached to a failing test's report."""
    yield lifecycle_stack
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        print(lifecycle_stack.logs())


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.when == "call":
        item.rep_call = report


