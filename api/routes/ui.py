"""The browser page: ``GET /ui`` and the files it loads.

The page itself is static (``api/static/``: index.html, app.js, style.css) and
talks to the public API like any other client.  The 3D viewer is Google's
``<model-viewer>`` web component; it is not part of this repository but is
installed by ``scripts/install.sh`` with npm into ``.tools/`` and served from
here, so the page works offline and without a CDN.  When that file is missing
the page says "3D viewer not installed" and still offers the downloads.

Settings (environment):
    SYNCHUMAN_UI__MODEL_VIEWER_PATH   path of ``model-viewer.min.js`` (the
                                      self-contained ES module build); default:
                                      ``.tools/node_modules/@google/model-viewer/
                                      dist/model-viewer.min.js`` in the checkout,
                                      then under the working directory.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response
from pydantic_settings import BaseSettings, SettingsConfigDict

STATIC_DIR = Path(__file__).resolve().parents[1] / "static"
MODEL_VIEWER_FILE = Path(".tools/node_modules/@google/model-viewer/dist/model-viewer.min.js")
REPO_ROOT = Path(__file__).resolve().parents[2]

MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}
"""The only kinds of file the page is made of; anything else is not served."""


class UiSettings(BaseSettings):
    """Where the page finds the model-viewer module."""

    model_config = SettingsConfigDict(env_prefix="SYNCHUMAN_UI__", extra="ignore")

    model_viewer_path: Path | None = None


def model_viewer_path() -> Path | None:
    """The installed model-viewer module, or None when it is not installed.

    Looked up on every request, so installing it does not need a restart.
    """
    configured = UiSettings().model_viewer_path
    candidates = [configured] if configured else [REPO_ROOT / MODEL_VIEWER_FILE, Path.cwd() / MODEL_VIEWER_FILE]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    return None


router = APIRouter(tags=["web page"], include_in_schema=False)


@router.api_route("/ui", methods=["GET", "HEAD"])
def page() -> FileResponse:
    """The web page: drop a photo, follow the job, turn the model, download it."""
    return FileResponse(
        STATIC_DIR / "index.html",
        media_type=MEDIA_TYPES[".html"],
        headers={"Cache-Control": "no-cache"},
    )


@router.get("/ui/")
def page_with_slash() -> RedirectResponse:
    return RedirectResponse("/ui", status_code=308)


@router.get("/ui/static/{name}")
def static_file(name: str) -> Response:
    """One of the page's own files (flat folder, known extensions only)."""
    path = (STATIC_DIR / name).resolve()
    media_type = MEDIA_TYPES.get(path.suffix)
    if path.parent != STATIC_DIR or media_type is None or not path.is_file():
        return _not_found("not_found", f"No page file named {name!r}.")
    return FileResponse(path, media_type=media_type, headers={"Cache-Control": "no-cache"})


@router.get("/ui/vendor/model-viewer.min.js")
def model_viewer_module() -> Response:
    """The ``<model-viewer>`` ES module from the local npm install."""
    path = model_viewer_path()
    if path is None:
        return _not_found(
            "viewer_not_installed",
            "The 3D viewer (@google/model-viewer) is not installed: run scripts/install.sh.",
        )
    return FileResponse(
        path, media_type=MEDIA_TYPES[".js"], headers={"Cache-Control": "public, max-age=86400"}
    )


def _not_found(code: str, message: str) -> JSONResponse:
    return JSONResponse(
        status_code=404, content={"error": {"code": code, "message": message, "retryable": False}}
    )
