"""The real local stack and a real headless Chromium for the web page's tests.

One stack per package (``client.stack.ServiceStack``): ``redis-server`` on a free
loopback port, the API under uvicorn, and one Celery worker (solo pool) with the
CPU preview pipeline, all sharing a temporary local-storage folder.  The browser is Debian's
``/usr/bin/chromium`` driven by Playwright (no browser download); WebGL runs
on SwiftShader so ``<model-viewer>`` renders without a GPU.

Screenshots go to ``test-artifacts/browser/`` (git-ignored).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from client.stack import REPO_ROOT, RedisServer, ServiceStack
from tests.support.requirements import unavailable

CHROMIUM = os.environ.get("SYNCHUMAN_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--use-angle=swiftshader",
    "--enable-unsafe-swiftshader",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS_DIR = REPO_ROOT / "test-artifacts" / "browser"
STACK_START_TIMEOUT_S = 90.0


SETTINGS = {"SYNCHUMAN_STORAGE__BACKEND": "local", "SYNCHUMAN_WORKER__HEARTBEAT_INTERVAL_S": "1"}
"""The stack's settings beyond ``ServiceStack``'s defaults."""


@dataclass
class LocalStack:
    """The running services and where to reach them."""

    services: ServiceStack
    redis_url: str

    @property
    def base_url(self) -> str:
        return self.services.api_url


@pytest.fixture(scope="package")
def local_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    if shutil.which("redis-server") is None:
        unavailable("redis-server is not installed (apt-get install redis-server)")
    workdir = tmp_path_factory.mktemp("browser-stack")
    redis_server = RedisServer(workdir, aof=False).start()
    services = ServiceStack(workdir, redis_server.url, **SETTINGS)
    try:
        services.start_api()
        services.start_worker()
        _wait_ready(services, "the local stack")
        yield LocalStack(services=services, redis_url=redis_server.url)
    finally:
        services.stop()
        redis_server.stop()


def _wait_ready(services: ServiceStack, what: str) -> None:
    """Wait for ``/readyz``; a process that exits meanwhile fails at once, with the logs' tails."""
    try:
        services.wait_ready(STACK_START_TIMEOUT_S)
    except (RuntimeError, TimeoutError) as exc:
        raise RuntimeError(f"{what}: {exc}\n{services.logs()}") from None


@pytest.fixture(scope="package")
def browser() -> Iterator[object]:
    """Headless Chromium for the tests of this package.

    Package scope on purpose: while Playwright's sync API is open it keeps an
    event loop running in the main thread, which would break later tests that
    call ``asyncio.run``; it is closed once the browser tests are done.
    """
    try:
        from playwright import sync_api as playwright_api
    except ImportError:
        unavailable("playwright is not installed (pip install -e '.[dev]')")
    if not Path(CHROMIUM).exists():
        unavailable(f"{CHROMIUM} is not installed (apt-get install chromium)")
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(browser, local_stack: LocalStack) -> Iterator[object]:
    """A fresh browser context (empty local storage) showing the web page.

    ``page.console_errors`` and ``page.failed_responses`` (status >= 400)
    collect what went wrong from the first request on.
    """
    context = browser.new_context(base_url=local_stack.base_url, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.console_errors = []
    page.failed_responses = []
    page.on("console", lambda msg: msg.type == "error" and page.console_errors.append(msg.text))
    page.on("pageerror", lambda exc: page.console_errors.append(str(exc)))
    page.on("response", lambda r: r.status >= 400 and page.failed_responses.append(f"{r.status} {r.url}"))
    page.goto("/ui")
    try:
        yield page
    finally:
        context.close()


@pytest.fixture(scope="session")
def model_viewer_installed() -> Path:
    """The model-viewer module the API serves (scripts/install.sh installs it)."""
    from api.routes.ui import model_viewer_path

    path = model_viewer_path()
    if path is None:
        unavailable("@google/model-viewer is not installed in .tools/ (run scripts/install.sh)")
    return path


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    ARTIFACTS_DIR.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS_DIR


@dataclass
class KeyedApi:
    """A second API process of the same stack that requires an API key."""

    base_url: str
    token: str


@pytest.fixture(scope="package")
def keyed_api(local_stack: LocalStack) -> Iterator[KeyedApi]:
    """An API that requires a key, on the local stack's Redis, key prefix, storage and secrets (its worker
    serves both APIs)."""
    import redis

    from shared.auth import KeyStore

    local = local_stack.services
    secrets = {name: local.env[name] for name in ("SYNCHUMAN_STORAGE__SIGNING_SECRET", "SYNCHUMAN_WEBHOOKS__SECRET")}
    keyed = ServiceStack(local.workdir, local_stack.redis_url, prefix=local.prefix, log_dir=local.workdir / "keyed",
                         **SETTINGS, **secrets, SYNCHUMAN_AUTH__ENABLED="true")
    try:
        keyed.start_api()
        _wait_ready(keyed, "the keyed API")
        client = redis.Redis.from_url(local_stack.redis_url)
        token = KeyStore(client, prefix=keyed.prefix).create("web page").token
        client.close()
        yield KeyedApi(base_url=keyed.api_url, token=token)
    finally:
        keyed.stop()
