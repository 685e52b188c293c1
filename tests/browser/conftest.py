"""The real local stack and a real headless Chromium for the web page's tests.

One stack per session: ``redis-server`` on a free loopback port, the API under
uvicorn, and one Celery worker (solo pool) with the CPU preview pipeline, all
sharing a temporary local-storage folder.  The browser is Debian's
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

from client.stack import (
    REPO_ROOT,
    RedisServer,
    ServiceProcess,
    api_process,
    free_port,
    service_env,
    stop_all,
    wait_for_readyz,
    worker_process,
)
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


@dataclass
class LocalStack:
    """The running services and where to reach them."""

    base_url: str
    redis_url: str
    workdir: Path
    env: dict[str, str]
    """The environment every process of the stack runs with."""


@pytest.fixture(scope="package")
def local_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    if shutil.which("redis-server") is None:
        unavailable("redis-server is not installed (apt-get install redis-server)")
    workdir = tmp_path_factory.mktemp("browser-stack")
    redis_server = RedisServer(workdir, aof=False).start()
    api_port = free_port()
    base_url = f"http://127.0.0.1:{api_port}"
    env = service_env(
        redis_server.url,
        inherit_settings=True,
        SYNCHUMAN_STORAGE__BACKEND="local",
        SYNCHUMAN_STORAGE__LOCAL_DIR=str(workdir / "storage"),
        SYNCHUMAN_STORAGE__PUBLIC_BASE_URL=base_url,
        SYNCHUMAN_WORKER__HEARTBEAT_INTERVAL_S="1",
    )
    processes = [api_process("api", env, workdir, api_port), worker_process("worker", env, workdir)]
    try:
        for process in processes:
            process.start()
        _wait_ready(base_url, processes, "the local stack")
        yield LocalStack(base_url=base_url, redis_url=redis_server.url, workdir=workdir, env=env)
    finally:
        stop_all(processes)
        redis_server.stop()


def _wait_ready(base_url: str, processes: list[ServiceProcess], what: str) -> None:
    """Wait for ``/readyz``; a process that exits meanwhile fails at once, with the logs' tails."""
    try:
        wait_for_readyz(base_url, processes, STACK_START_TIMEOUT_S, f"{what} (/readyz)", interval=0.2)
    except (RuntimeError, TimeoutError) as exc:
        tails = "\n".join(f"--- {p.name}.log\n" + p.output()[-3000:] for p in processes)
        raise RuntimeError(f"{exc}\n{tails}") from None


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
    import redis

    from shared.auth import KeyStore

    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    env = {**local_stack.env, "SYNCHUMAN_AUTH__ENABLED": "true", "SYNCHUMAN_STORAGE__PUBLIC_BASE_URL": base_url}
    api = api_process("api-keyed", env, local_stack.workdir, port).start()
    try:
        _wait_ready(base_url, [api], "the keyed API")
        client = redis.Redis.from_url(local_stack.redis_url)
        token = KeyStore(client, prefix=env.get("SYNCHUMAN_REDIS__KEY_PREFIX", "synchuman")).create("web page").token
        client.close()
        yield KeyedApi(base_url=base_url, token=token)
    finally:
        api.stop()
