"""The routes that serve the web page, without a browser or a stack."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.routes import ui


@pytest.fixture
def client() -> TestClient:
    app = FastAPI()
    app.include_router(ui.router)
    return TestClient(app)


def test_page_and_its_files_are_served_with_their_types(client):
    page = client.get("/ui")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    for src in ("/ui/static/app.js", "/ui/static/style.css", "/ui/static/icon.svg"):
        assert f'"{src}"' in page.text
    assert client.get("/ui/static/app.js").headers["content-type"].startswith("text/javascript")
    assert client.get("/ui/static/style.css").headers["content-type"].startswith("text/css")
    assert client.get("/ui/static/icon.svg").headers["content-type"] == "image/svg+xml"
    assert client.get("/ui/", follow_redirects=False).headers["location"] == "/ui"
    assert client.head("/ui").status_code == 200


def test_every_module_the_page_imports_is_served(client):
    pending, seen = ["app.js"], set()
    while pending:
        name = pending.pop()
        seen.add(name)
        answer = client.get(f"/ui/static/{name}")
        assert answer.status_code == 200, name
        assert answer.headers["content-type"].startswith("text/javascript")
        pending += [m for m in re.findall(r'from "\./([\w-]+\.js)"', answer.text) if m not in seen]
    assert {"app.js", "api.js", "dom.js", "format.js", "options.js", "pipeline.js", "recent.js"} <= seen


def test_page_never_loads_anything_from_another_origin(client):
    files = sorted(p.name for p in ui.STATIC_DIR.iterdir() if p.suffix in (".html", ".js", ".css"))
    assert "index.html" in files and "app.js" in files
    for name in files:
        text = client.get(f"/ui/static/{name}").text
        assert "http://" not in text.replace("http://www.w3.org/2000/svg", ""), name
        assert "https://" not in text, name


@pytest.mark.parametrize("name", ["ui.py", "nothing.js", "__init__.py", "index.htm"])
def test_only_the_page_files_are_served(client, name):
    answer = client.get(f"/ui/static/{name}")
    assert answer.status_code == 404
    assert answer.json()["error"]["code"] == "not_found"


@pytest.mark.parametrize("path", ["..%2Fui.py", "..%2F..%2Fpyproject.toml", "..%5Cui.py"])
def test_paths_out_of_the_static_folder_are_refused(client, path):
    answer = client.get(f"/ui/static/{path}")
    assert answer.status_code == 404
    assert "APIRouter" not in answer.text and "[build-system]" not in answer.text


def test_model_viewer_is_served_from_the_configured_path(client, tmp_path, monkeypatch):
    module = tmp_path / "model-viewer.min.js"
    module.write_text("customElements.define('model-viewer', class extends HTMLElement {});\n")
    monkeypatch.setenv("SYNCHUMAN_UI__MODEL_VIEWER_PATH", str(module))
    answer = client.get("/ui/vendor/model-viewer.min.js")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/javascript")
    assert answer.text == module.read_text()


def test_missing_model_viewer_is_a_clear_404(client, tmp_path: Path, monkeypatch):
    monkeypatch.setenv("SYNCHUMAN_UI__MODEL_VIEWER_PATH", str(tmp_path / "absent.js"))
    answer = client.get("/ui/vendor/model-viewer.min.js")
    assert answer.status_code == 404
    assert answer.json()["error"]["code"] == "viewer_not_installed"
    assert "scripts/install.sh" in answer.json()["error"]["message"]
