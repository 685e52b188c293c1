"""The web page in a real headless Chromium against the real local stack.

Each test drives the page the way a person would (pick or drop a file, open
the advanced options, click) and checks what the page shows, then checks the
service agrees (job status through the API).  Screenshots are saved under
``test-artifacts/browser/``.
"""

from __future__ import annotations

import io

import httpx
import pytest
from PIL import Image, ImageStat

pytestmark = pytest.mark.slow

JOB_TIMEOUT_MS = 120_000
"""A preview job takes seconds; the deadline leaves room for a loaded CI machine."""


def _job_id(page) -> str:
    page.wait_for_function("document.getElementById('job-id').textContent.length > 0")
    return page.locator("#job-id").text_content()


def _submit_until_failed(page, photo):
    """Submit `photo` from the page and wait until the job failed; (job id, the page's message)."""
    page.set_input_files("#file-input", str(photo))
    page.click("#submit-button")
    job_id = _job_id(page)
    page.wait_for_function(
        "document.getElementById('job-status').textContent === 'failed'", timeout=JOB_TIMEOUT_MS
    )
    return job_id, page.locator("#job-message")


def _luminance_stddev(png: bytes) -> float:
    return ImageStat.Stat(Image.open(io.BytesIO(png)).convert("L")).stddev[0]


def test_photo_to_model_shows_both_stages_and_the_glb(
    page, local_stack, sample_photos, artifacts_dir, model_viewer_installed
):
    photo = sample_photos[0]
    page.wait_for_function("document.getElementById('pipeline-badge').dataset.kind === 'preview'")
    assert "not SyncHuman" in page.locator("#pipeline-badge").text_content()

    page.set_input_files("#file-input", str(photo))
    page.wait_for_function("document.getElementById('photo-preview').naturalWidth > 0")
    assert page.locator("#photo-caption").text_content() == photo.name
    requests: list[str] = []
    page.on("request", lambda r: requests.append(f"{r.method} {r.url}"))
    page.click("#submit-button")

    job_id = _job_id(page)
    page.wait_for_function(
        "['running', 'succeeded'].includes(document.getElementById('job-status').textContent)",
        timeout=JOB_TIMEOUT_MS,
    )
    page.screenshot(path=str(artifacts_dir / "progress.png"), full_page=True)
    page.wait_for_function(
        "document.getElementById('job-status').textContent === 'succeeded'", timeout=JOB_TIMEOUT_MS
    )
    assert page.locator("#progress-bar").get_attribute("value") == "100"
    assert "elapsed" in page.locator("#progress-text").text_content()
    # The page followed the job through its event stream (EventSource), not by polling it.
    job_url = f"{local_stack.base_url}/v1/jobs/{job_id}"
    assert f"GET {job_url}/events" in requests
    assert f"GET {job_url}" not in requests

    # Stage-1 strip: five colour views and five normal maps, all decoded.
    for strip in ("#color-strip", "#normal-strip"):
        assert page.locator(f"{strip} img").count() == 5
    page.wait_for_function(
        "[...document.querySelectorAll('.strip img')].every(img => img.complete && img.naturalWidth === 768)"
    )
    page.wait_for_function("document.getElementById('cutout-preview').naturalWidth === 768")

    # The GLB is loaded and shown by <model-viewer>.
    page.wait_for_function(
        "(() => { const v = document.getElementById('viewer'); return v.loaded && v.modelIsVisible; })()",
        timeout=60_000,
    )
    viewer = page.locator("#viewer")
    assert "output.glb" in viewer.evaluate("v => v.src")
    assert viewer.evaluate("v => v.autoRotate && v.cameraControls") is True
    page.locator("#viewer-loading").wait_for(state="hidden")
    viewer.evaluate("v => { v.autoRotate = false; v.resetTurntableRotation(0); v.jumpCameraToGoal(); }")
    page.wait_for_timeout(500)
    box = page.locator(".viewer-box")
    rendered = box.screenshot(path=str(artifacts_dir / "viewer.png"))
    page.screenshot(path=str(artifacts_dir / "result-page.png"), full_page=True)
    # The same box with the 3D canvas hidden: what a blank viewer would look like.
    viewer.evaluate("v => { v.style.visibility = 'hidden'; }")
    blank = box.screenshot(path=str(artifacts_dir / "viewer-hidden.png"))
    viewer.evaluate("v => { v.style.visibility = ''; }")
    rendered_spread, blank_spread = _luminance_stddev(rendered), _luminance_stddev(blank)
    assert rendered_spread > 15, f"the 3D view looks blank (luminance stddev {rendered_spread:.1f})"
    assert rendered_spread > 2 * blank_spread, (rendered_spread, blank_spread)
    # Orbit to the side, as a person dragging would: the model is still there, seen differently.
    viewer.evaluate("v => { v.cameraOrbit = '90deg 80deg auto'; v.jumpCameraToGoal(); }")
    page.wait_for_timeout(500)
    side = box.screenshot(path=str(artifacts_dir / "viewer-side.png"))
    assert _luminance_stddev(side) > 2 * blank_spread
    assert side != rendered

    # Downloads: GLB, PLY, turntable video and zip, each served with real content.
    links = page.locator("#downloads a")
    assert links.count() == 4
    magic = {"output.glb": b"glTF", "output_mesh.ply": b"ply", "turntable.mp4": b"ftyp", "results.zip": b"PK"}
    for i in range(4):
        href, download = links.nth(i).get_attribute("href"), links.nth(i).get_attribute("download")
        assert download.startswith(job_id)
        expected = next(m for name, m in magic.items() if download.endswith(name))
        response = page.request.get(href)
        assert response.status == 200
        assert expected in response.body()[:8]
    assert "preview pipeline" in page.locator("#result-pipeline").text_content()

    # The job is remembered in this browser and agrees with the API.
    entry = page.locator(f"#recent-list li[data-job-id='{job_id}']")
    assert entry.locator(".status-chip").text_content() == "succeeded"
    # ... with the model's thumbnail.
    entry.locator("img.recent-thumbnail").wait_for()
    page.wait_for_function(
        f"document.querySelector(\"#recent-list li[data-job-id='{job_id}'] img.recent-thumbnail\").naturalWidth === 512"
    )
    entry.screenshot(path=str(artifacts_dir / "recent-entry.png"))
    assert httpx.get(f"{local_stack.base_url}/v1/jobs/{job_id}").json()["status"] == "succeeded"
    assert page.failed_responses == []
    assert page.console_errors == []


def test_recent_job_reopens_and_page_works_without_the_3d_viewer(page, local_stack, sample_photos, artifacts_dir):
    page.set_input_files("#file-input", str(sample_photos[-1]))
    page.click("#advanced summary")
    page.check("#opt-formats input[value=usdz]")
    page.click("#submit-button")
    job_id = _job_id(page)
    page.wait_for_function(
        "document.getElementById('job-status').textContent === 'succeeded'", timeout=JOB_TIMEOUT_MS
    )
    job = httpx.get(f"{local_stack.base_url}/v1/jobs/{job_id}").json()
    assert job["options"]["formats"] == ["glb", "usdz"]
    usdz = page.locator("#downloads a", has_text="USDZ")
    assert usdz.get_attribute("download").endswith("output.usdz")
    assert page.request.get(usdz.get_attribute("href")).body()[:2] == b"PK"

    # A second tab of the same browser, where the viewer module cannot be had.
    second = page.context.new_page()
    second.route("**/ui/vendor/model-viewer.min.js", lambda route: route.fulfill(status=404, body="{}"))
    second.goto("/ui")
    entry = second.locator(f"#recent-list li[data-job-id='{job_id}']")
    entry.locator(".status-chip", has_text="succeeded").wait_for()
    entry.locator("button.recent-open").click()

    second.locator("#result-panel").wait_for(state="visible")
    second.locator("#viewer-missing").wait_for(state="visible")
    assert "3D viewer not installed" in second.locator("#viewer-missing").text_content()
    assert second.locator("#downloads a").count() == 5
    assert second.locator("#color-strip img").count() == 5
    assert second.locator("#job-id").text_content() == job_id
    second.screenshot(path=str(artifacts_dir / "no-viewer.png"), full_page=True)


def test_running_job_is_canceled_from_the_page(page, local_stack, sample_photos, artifacts_dir):
    # The slowest options the preview pipeline honours keep the job running long enough to click.
    page.click("#advanced summary")
    page.select_option("#opt-texture_size", "2048")
    page.fill("#opt-simplify", "0")
    page.set_input_files("#file-input", str(sample_photos[0]))
    page.click("#submit-button")
    job_id = _job_id(page)

    page.wait_for_function(
        "document.getElementById('job-status').textContent === 'running'", timeout=JOB_TIMEOUT_MS
    )
    page.click("#cancel-button")
    page.wait_for_function(
        "document.getElementById('job-status').textContent === 'canceled'", timeout=30_000
    )
    assert page.locator("#job-message").text_content() == "The job was canceled."
    assert page.locator("#cancel-button").is_hidden()
    assert page.locator("#result-panel").is_hidden()
    page.screenshot(path=str(artifacts_dir / "canceled.png"), full_page=True)

    job = httpx.get(f"{local_stack.base_url}/v1/jobs/{job_id}").json()
    assert job["status"] == "canceled"
    assert job["options"]["texture_size"] == 2048 and job["options"]["simplify"] == 0
    entry = page.locator(f"#recent-list li[data-job-id='{job_id}']")
    assert entry.locator(".status-chip").text_content() == "canceled"


def test_non_image_upload_is_refused_in_words(page, local_stack, artifacts_dir):
    # Drop a text file on the drop zone, as a person dragging the wrong file would.
    page.evaluate(
        """() => {
            const data = new DataTransfer();
            data.items.add(new File(["name,age\\nada,36\\n"], "people.csv", { type: "text/csv" }));
            const zone = document.getElementById('drop-zone');
            zone.dispatchEvent(new DragEvent('dragover', { dataTransfer: data, bubbles: true, cancelable: true }));
            zone.dispatchEvent(new DragEvent('drop', { dataTransfer: data, bubbles: true, cancelable: true }));
        }"""
    )
    assert page.locator("#photo-caption").text_content().startswith("people.csv")
    page.click("#submit-button")
    error = page.locator("#form-error.error")
    error.wait_for(state="visible")
    text = error.text_content()
    assert "not an image" in text
    assert error.get_attribute("role") == "alert"
    assert page.locator("#job-panel").is_hidden()
    assert page.locator("#recent-list li").count() == 0
    assert [f.split()[0] for f in page.failed_responses if f.endswith("/v1/jobs")] == ["422"]
    page.screenshot(path=str(artifacts_dir / "not-an-image.png"), full_page=True)


def test_options_out_of_bounds_are_caught_before_upload(page, local_stack, sample_photos):
    page.set_input_files("#file-input", str(sample_photos[0]))
    page.click("#advanced summary")
    maximum = int(page.locator("#opt-stage1_steps").get_attribute("max"))
    page.fill("#opt-stage1_steps", str(maximum + 1))
    page.click("#submit-button")
    error = page.locator("#form-error")
    error.wait_for(state="visible")
    assert error.text_content() == f"Stage-1 steps: at most {maximum}."
    assert page.locator("#job-panel").is_hidden()


def test_form_is_labelled_and_usable_from_the_keyboard(page, local_stack):
    unlabelled = page.evaluate(
        """() => [...document.querySelectorAll('input, select')]
                 .filter(el => el.labels.length === 0).map(el => el.id)"""
    )
    assert unlabelled == []
    focused: list[str] = []
    while "SUMMARY" not in focused and len(focused) < 10:
        page.keyboard.press("Tab")
        focused.append(page.evaluate("document.activeElement.id || document.activeElement.tagName"))
    assert "file-input" in focused and focused.index("file-input") < focused.index("SUMMARY"), focused
    page.keyboard.press("Enter")  # opens the advanced options from the keyboard
    assert page.locator("#advanced").evaluate("d => d.open") is True
    assert page.locator("#opt-seed").get_attribute("min") == "0"


def test_page_asks_for_the_api_key_when_the_server_requires_one(browser, keyed_api, sample_photos):
    context = browser.new_context(base_url=keyed_api.base_url)
    try:
        page = context.new_page()
        page.goto("/ui")
        assert page.locator("#api-key-row").is_hidden()
        page.set_input_files("#file-input", str(sample_photos[0]))
        page.click("#submit-button")
        page.locator("#api-key-row").wait_for(state="visible")
        assert "needs an API key" in page.locator("#form-error").text_content()
        assert page.evaluate("document.activeElement.id") == "api-key"

        page.fill("#api-key", keyed_api.token)
        page.click("#submit-button")
        job_id = _job_id(page)
        page.wait_for_function(
            "document.getElementById('job-status').textContent === 'succeeded'", timeout=JOB_TIMEOUT_MS
        )
        assert page.locator("#downloads a").count() == 4
        headers = {"Authorization": f"Bearer {keyed_api.token}"}
        assert httpx.get(f"{keyed_api.base_url}/v1/jobs/{job_id}", headers=headers).json()["status"] == "succeeded"
        assert httpx.get(f"{keyed_api.base_url}/v1/jobs/{job_id}").status_code == 401
    finally:
        context.close()


def test_failed_job_is_explained_with_its_code(page, local_stack, tmp_path, artifacts_dir):
    # A transparent picture whose only visible pixel passes the upload checks but not the pipeline's.
    speck = Image.new("RGBA", (256, 256), (0, 0, 0, 0))
    speck.putpixel((128, 128), (200, 120, 90, 255))
    photo = tmp_path / "speck.png"
    speck.save(photo)

    job_id, message = _submit_until_failed(page, photo)
    assert message.locator("strong").text_content().startswith("Job failed: No person was found")
    assert "(code no_foreground)" in message.text_content()
    assert page.locator("#stages li.stopped").count() == 1
    assert page.locator("#result-panel").is_hidden()
    page.screenshot(path=str(artifacts_dir / "failed.png"), full_page=True)

    job = httpx.get(f"{local_stack.base_url}/v1/jobs/{job_id}").json()
    assert job["status"] == "failed" and job["error"]["code"] == "no_foreground"


def test_photo_without_a_person_is_refused_in_words(page, local_stack, tmp_path, artifacts_dir):
    advice = page.locator("#photo-advice")
    assert advice.is_visible() and "whole body in view" in advice.text_content()
    # A cut-out of a cube: transparent background, a visible shape, but no person.
    cube = Image.new("RGBA", (512, 512), (0, 0, 0, 0))
    cube.paste((200, 80, 60, 255), (128, 128, 384, 384))
    photo = tmp_path / "cube.png"
    cube.save(photo)

    job_id, message = _submit_until_failed(page, photo)
    assert message.locator("strong").text_content().startswith("Job failed: No person was found")
    assert "The service models people" in message.text_content()
    assert "(code no_person)" in message.text_content()
    page.screenshot(path=str(artifacts_dir / "no-person.png"), full_page=True)

    job = httpx.get(f"{local_stack.base_url}/v1/jobs/{job_id}").json()
    assert job["status"] == "failed" and job["error"]["code"] == "no_person" and job["stage"] == "preprocess"
