"""docker-compose.yml and the Dockerfiles cannot be built here; check what can be checked.

The compose file parses, every path and command it names exists, every worker
reserves one GPU of its own, and the API image carries no torch.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import re
import shlex
import shutil
from pathlib import Path
import subprocess

import pytest
import yaml

from client.stack import REPO_ROOT
from shared.queue import GPU_QUEUE, WEBHOOK_QUEUE
from tests.support.requirements import unavailable



@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())


def dockerfile_copies(path: Path) -> list[str]:
    """What the Dockerfile copies from the build context (not ``COPY --from=`` another stage)."""
    sources = []
    for line in path.read_text().splitlines():
        if line.startswith("COPY ") and "--from=" not in line:
            sources.extend(arg for arg in shlex.split(line)[1:-1] if not arg.startswith("--"))
    return sources


def test_compose_services_and_their_build_files_exist(compose):
    services = compose["services"]
    assert {"redis", "s3", "api", "worker-gpu0"} <= set(services)
    for name, service in services.items():
        build = service.get("build")
        if build:
            assert (REPO_ROOT / build["context"]).is_dir(), name
            assert (REPO_ROOT / build["context"] / build["dockerfile"]).is_file(), name
    for dockerfile in ("Dockerfile.api", "Dockerfile.worker"):
        for source in dockerfile_copies(REPO_ROOT / dockerfile):
            assert (REPO_ROOT / source).exists(), f"{dockerfile} copies missing {source}"


def test_redis_keeps_an_append_only_file(compose):
    command = compose["services"]["redis"]["command"]
    assert command[command.index("--appendonly") + 1] == "yes"


def test_compose_commands_name_real_modules_and_queues(compose):
    for name, service in compose["services"].items():
        command = service.get("command") or []
        if command[:1] == ["uvicorn"]:
            module, attr = command[1].split(":")
            assert callable(getattr(importlib.import_module(module), attr)), name
        if command[:1] == ["celery"]:
            assert importlib.util.find_spec(command[command.index("-A") + 1]) is not None, name
            queues = command[command.index("-Q") + 1].split(",")
            assert set(queues) <= {GPU_QUEUE, WEBHOOK_QUEUE}, name
    for dockerfile, start in (("Dockerfile.api", ["uvicorn", "api.app:create_app"]), ("Dockerfile.worker", ["celery", "-A", "worker.celery_app"])):
        exec_form = re.search(r"^CMD (\[.*\])$", (REPO_ROOT / dockerfile).read_text(), re.M).group(1)
        assert json.loads(exec_form)[:len(start)] == start, dockerfile


def test_each_gpu_worker_reserves_its_own_gpu_and_runs_solo(compose):
    workers = {n: s for n, s in compose["services"].items() if n.startswith("worker-gpu")}
    assert workers
    devices = []
    for name, service in workers.items():
        [reservation] = service["deploy"]["resources"]["reservations"]["devices"]
        assert reservation["capabilities"] == ["gpu"] and len(reservation["device_ids"]) == 1
        devices.extend(reservation["device_ids"])
        command = service["command"]
        assert command[command.index("-P") + 1] == "solo" and command[command.index("-Q") + 1] == GPU_QUEUE
        assert service["environment"]["CUDA_VISIBLE_DEVICES"] == "0"
        assert service["environment"]["SYNCHUMAN_REDIS__URL"] == "redis://redis:6379/0"
    assert len(devices) == len(set(devices)), "two workers reserve the same GPU"


def test_api_image_carries_no_torch():
    text = (REPO_ROOT / "Dockerfile.api").read_text()
    install_lines = [line for line in text.splitlines() if "pip install" in line]
    assert install_lines and not any("torch" in line or "[worker" in line for line in install_lines)
    assert "FROM python:" in text and "cuda" not in text.lower().split("from", 1)[1].splitlines()[0]


def test_api_image_serves_the_model_viewer_it_installs():
    text = (REPO_ROOT / "Dockerfile.api").read_text()
    stages = re.findall(r"^FROM (\S+)(?: AS (\S+))?$", text, re.M)
    assert stages[-1][0].startswith("python:"), "the last stage is the API image"
    builders = {alias for image, alias in stages[:-1] if image.startswith("node:")}
    [copy] = [line for line in text.splitlines() if line.startswith("COPY --from=")]
    _, stage, source, target = shlex.split(copy)
    assert stage.removeprefix("--from=") in builders
    assert source.endswith("node_modules/@google/model-viewer/dist/model-viewer.min.js")
    assert re.search(r"npm install --prefix (\S+) .*@google/model-viewer@\d+\.\d+\.\d+", text)
    env = dict(re.findall(r"^ENV (SYNCHUMAN_UI__MODEL_VIEWER_PATH)=(\S+)$", text, re.M))
    assert env["SYNCHUMAN_UI__MODEL_VIEWER_PATH"] == target  # the path the page's module is served from


def run_tool(*command: str) -> subprocess.CompletedProcess:
    if shutil.which(command[0]) is None:
        unavailable(f"{command[0]} is not installed (the dev extra installs it)")
    return subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("dockerfile", ["Dockerfile.api", "Dockerfile.worker"])
def test_dockerfiles_pass_hadolint_and_explain_each_ignored_rule(dockerfile):
    result = run_tool("hadolint", "--no-color", dockerfile)
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout
    lines = (REPO_ROOT / dockerfile).read_text().splitlines()
    for index, line in enumerate(lines):
        if line.startswith("# hadolint ignore="):
            reason = lines[index - 1]
            assert reason.startswith("#") and "hadolint" not in reason, f"{dockerfile}:{index + 1} ignores without a reason"


def test_compose_file_follows_the_compose_specification():
    result = run_tool("check-jsonschema", "--builtin-schema", "vendor.compose-spec", "docker-compose.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_worker_compile_cache_is_a_volume_the_worker_user_can_write(compose):
    text = (REPO_ROOT / "Dockerfile.worker").read_text()
    cache = re.search(r"TORCHINDUCTOR_CACHE_DIR=(\S+)", text).group(1)
    instructions = re.sub(r"\\\n", " ", text).splitlines()  # continuation lines joined
    user_at = next(i for i, line in enumerate(instructions) if line.startswith("USER "))
    assert instructions[user_at].split()[1] == "10001"
    # Made and handed to uid 10001 before the USER line, so a new named volume copies that owner.
    [made] = [i for i, line in enumerate(instructions) if line.startswith("RUN ") and f"mkdir -p {cache}" in line]
    assert made < user_at
    parent = cache.rsplit("/", 1)[0]
    assert re.search(rf"chown (-R )?10001(:10001)? ({re.escape(cache)}|{re.escape(parent)})( |$)", instructions[made])
    volumes = compose.get("volumes", {})
    for name, service in compose["services"].items():
        if name.startswith("worker-gpu"):
            mounts = [m.split(":") for m in service["volumes"]]
            assert any(target == cache and source in volumes for source, target, *_ in mounts), name


def test_a_one_gpu_host_starts_without_editing_the_compose_file(compose):
    default = {n: s for n, s in compose["services"].items() if not s.get("profiles")}
    gpus = [d for s in default.values() for d in s.get("deploy", {}).get("resources", {}).get("reservations", {}).get("devices", [])]
    assert [d["device_ids"] for d in gpus] == [["0"]], "only GPU 0 is reserved without a profile"
    extra = [n for n, s in compose["services"].items() if n.startswith("worker-gpu") and s.get("profiles")]
    assert extra, "further GPU workers sit behind a profile"


def test_the_s3_store_is_the_one_the_tests_exercise(compose):
    assert compose["services"]["s3"]["image"].startswith("chrislusf/seaweedfs:")
    assert "-s3.config=" in " ".join(compose["services"]["s3"]["command"])
