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
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.hardening.processes import generated_secrets

REPO_ROOT = Path(__file__).resolve().parents[2]
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


def _unavailable(message: str) -> None:
    """Skip where a tool is missing, but fail under CI=true, where a skip would hide the page's tests."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message + " (CI=true: the browser tests must run)")
    pytest.skip(message)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_until(check, timeout_s: float, what: str, processes: list[subprocess.Popen]) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for proc in processes:
            if proc.poll() is not None:
                command = " ".join(map(str, proc.args[:4]))
                raise RuntimeError(f"`{command} ...` exited with {proc.returncode} while waiting for {what}")
        if check():
            return
        time.sleep(0.2)
    raise TimeoutError(f"{what} not ready after {timeout_s:.0f} s")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def _start_api(port: int, env: dict[str, str], log) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "api.app:create_app", "--factory",
         "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
        stdout=log, stderr=subprocess.STDOUT, cwd=REPO_ROOT, env=env,
    )


def _ready(base_url: str) -> bool:
    try:
        return httpx.get(f"{base_url}/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture(scope="package")
def local_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    if shutil.which("redis-server") is None:
        _unavailable("redis-server is not installed (apt-get install redis-server)")
    workdir = tmp_path_factory.mktemp("browser-stack")
    redis_port, api_port = _free_port(), _free_port()
    base_url = f"http://127.0.0.1:{api_port}"
    redis_url = f"redis://127.0.0.1:{redis_port}/0"
    env = {
        **os.environ,
        "SYNCHUMAN_REDIS__URL": redis_url,
        "SYNCHUMAN_STORAGE__BACKEND": "local",
        "SYNCHUMAN_STORAGE__LOCAL_DIR": str(workdir / "storage"),
        "SYNCHUMAN_STORAGE__PUBLIC_BASE_URL": base_url,
        "SYNCHUMAN_WORKER__PIPELINE": "preview",
        "SYNCHUMAN_WORKER__HEARTBEAT_INTERVAL_S": "1",
        "PYTHONPATH": str(REPO_ROOT),
        **generated_secrets(),
    }
    logs = {name: open(workdir / f"{name}.log", "wb") for name in ("redis", "api", "worker")}
    processes: list[subprocess.Popen] = []
    try:
        redis = subprocess.Popen(
            ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=logs["redis"], stderr=subprocess.STDOUT, cwd=workdir,
        )
        processes.append(redis)
        processes.append(_start_api(api_port, env, logs["api"]))
        worker = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "worker.celery_app", "worker", "-P", "solo",
             "-Q", "gpu,webhooks", "--concurrency", "1", "--without-gossip", "--without-mingle",
             "--loglevel", "INFO"],
            stdout=logs["worker"], stderr=subprocess.STDOUT, cwd=REPO_ROOT, env=env,
        )
        processes.append(worker)

        try:
            _wait_until(lambda: _ready(base_url), STACK_START_TIMEOUT_S, "the local stack (/readyz)", processes)
        except (RuntimeError, TimeoutError) as exc:
            for log in logs.values():
                log.flush()
            tails = "\n".join(
                f"--- {name}.log\n" + (workdir / f"{name}.log").read_text(errors="replace")[-3000:] for name in logs
            )
            raise RuntimeError(f"{exc}\n{tails}") from None
        yield LocalStack(base_url=base_url, redis_url=redis_url, workdir=workdir, env=env)
    finally:
        for proc in reversed(processes):
            _stop(proc)
        for log in logs.values():
            log.close()


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
        _unavailable("playwright is not installed (pip install -e '.[dev]')")
    if not Path(CHROMIUM).exists():
        _unavailable(f"{CHROMIUM} is not installed (apt-get install chromium)")
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
    from api.ui import model_viewer_path

    path = model_viewer_path()
    if path is None:
        _unavailable("@google/model-viewer is not installed in .tools/ (run scripts/install.sh)")
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

    port = _free_port()
    base_url = f"http://127.0.0.1:{port}"
    env = {**local_stack.env, "SYNCHUMAN_AUTH__ENABLED": "true", "SYNCHUMAN_STORAGE__PUBLIC_BASE_URL": base_url}
    with open(local_stack.workdir / "api-keyed.log", "wb") as log:
        api = _start_api(port, env, log)
        try:
            _wait_until(lambda: _ready(base_url), STACK_START_TIMEOUT_S, "the keyed API (/readyz)", [api])
            client = redis.Redis.from_url(local_stack.redis_url)
            token = KeyStore(client, prefix=env.get("SYNCHUMAN_REDIS__KEY_PREFIX", "synchuman")).create("web page").token
            client.close()
            yield KeyedApi(base_url=base_url, token=token)
        finally:
            _stop(api)
