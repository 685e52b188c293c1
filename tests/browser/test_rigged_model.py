"""The web page asks for a rigged model and plays its clip in <model-viewer> (real Chromium, real stack)."""

from __future__ import annotations

import io

import httpx
import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.slow

JOB_TIMEOUT_MS = 180_000


def _pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.int16)


def test_rigged_model_is_offered_and_its_clip_plays(page, local_stack, sample_photos, artifacts_dir, model_viewer_installed):
    page.click("#advanced summary")
    page.check("#opt-rig")
    page.set_input_files("#file-input", str(sample_photos[-1]))
    page.click("#submit-button")
    page.wait_for_function("document.getElementById('job-id').textContent.length > 0")
    job_id = page.locator("#job-id").text_content()
    page.wait_for_function(
        "document.getElementById('job-status').textContent === 'succeeded'", timeout=JOB_TIMEOUT_MS
    )
    job = httpx.get(f"{local_stack.base_url}/v1/jobs/{job_id}").json()
    assert job["options"]["rig"] is True
    assert {"stage2/output.glb", "stage2/rigged.glb"} <= set(job["outputs"])

    link = page.locator("#downloads a", has_text="Rigged GLB")
    assert link.get_attribute("download") == f"{job_id}-rigged.glb"
    assert page.request.get(link.get_attribute("href")).body().startswith(b"glTF")

    viewer = page.locator("#viewer")
    page.wait_for_function(
        "(() => { const v = document.getElementById('viewer'); return v.loaded && v.modelIsVisible; })()",
        timeout=60_000,
    )
    assert "rigged.glb" in viewer.evaluate("v => v.src")
    assert viewer.evaluate("v => v.availableAnimations") == ["wave"]
    page.wait_for_function("!document.getElementById('viewer').paused", timeout=10_000)
    viewer.evaluate("v => { v.autoRotate = false; v.resetTurntableRotation(0); v.jumpCameraToGoal(); }")

    box = page.locator(".viewer-box")
    viewer.evaluate("v => { v.pause(); v.currentTime = 0; }")
    page.wait_for_timeout(400)
    rest = box.screenshot(path=str(artifacts_dir / "rigged-rest.png"))
    viewer.evaluate("v => { v.play(); }")
    page.wait_for_function("document.getElementById('viewer').currentTime > 1.2", timeout=20_000)
    viewer.evaluate("v => { v.pause(); }")
    page.wait_for_timeout(400)
    waving = box.screenshot(path=str(artifacts_dir / "rigged-waving.png"))
    viewer.evaluate("v => { v.style.visibility = 'hidden'; }")
    blank = box.screenshot(path=str(artifacts_dir / "rigged-hidden.png"))
    viewer.evaluate("v => { v.style.visibility = ''; }")

    rest_px, waving_px, blank_px = _pixels(rest), _pixels(waving), _pixels(blank)
    silhouette = (np.abs(rest_px - blank_px).sum(axis=-1) > 30) | (np.abs(waving_px - blank_px).sum(axis=-1) > 30)
    assert silhouette.mean() > 0.02, "the model is not visible in the viewer"
    changed = np.abs(waving_px - rest_px).sum(axis=-1) > 30
    assert changed[silhouette].mean() > 0.02, "the model did not move between two times of its clip"
    assert page.console_errors == []
