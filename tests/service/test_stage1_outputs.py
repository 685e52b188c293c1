"""Stage-1 outputs are listed, with working URLs, while the job still runs stage 2 (real stack)."""

from __future__ import annotations

import io
import json
import time

import httpx
import pytest
from PIL import Image

from client.stack import wait_until
from tests.support.service_stack import MESH_PREVIEWS

pytestmark = pytest.mark.slow

STAGE1_SET = {"input.png"} | {
    f"stage1/{name}"
    for name in ["input.png", *[f"color_{i}.png" for i in range(5)], *[f"normal_{i}.png" for i in range(5)],
                 "latent.npz", "voxel.ply"]
}
FINAL_ONLY = {"stage2/output.glb", "stage2/output_mesh.ply", "results.zip"} | MESH_PREVIEWS
SLOW_STAGE2 = {"texture_size": 2048, "simplify": 0.0, "stage2_steps": 100, "seed": 11}
"""Options that keep the preview pipeline's stage 2 busy long enough to be watched."""


def test_running_job_lists_the_complete_stage1_set_with_fresh_urls(s3_stack, sample_photo):
    api = s3_stack.api_url
    response = httpx.post(
        f"{api}/v1/jobs",
        files={"image": (sample_photo.name, sample_photo.read_bytes(), "image/png")},
        data={"options": json.dumps(SLOW_STAGE2)},
    )
    assert response.status_code == 202, response.text
    job_id = response.json()["id"]

    seen: list[dict] = []

    def stage1_visible_or_finished():
        job = httpx.get(f"{api}/v1/jobs/{job_id}", timeout=10).json()
        seen.append(job)
        if job["status"] == "running" and job["outputs"]:
            return job
        return job if job["status"] in ("succeeded", "failed", "canceled") else None

    early = wait_until(stage1_visible_or_finished, 240, "stage-1 outputs or the end of the job", interval=0.02)
    assert early["status"] == "running", f"the job finished before its stage-1 outputs were seen: {early['status']}"
    assert early["stage"] in ("stage1", "stage2", "export", "upload")
    assert set(early["outputs"]) == STAGE1_SET

    # The URLs work while the job runs: one of the five views is a real image.
    view = httpx.get(early["outputs"]["stage1/color_0.png"]["url"], timeout=10)
    assert view.status_code == 200
    assert Image.open(io.BytesIO(view.content)).size[0] > 0
    # Each read mints its URLs afresh.
    time.sleep(1.1)
    again = httpx.get(f"{api}/v1/jobs/{job_id}", timeout=10).json()
    if again["status"] == "running":
        assert again["outputs"]["stage1/color_0.png"]["url"] != early["outputs"]["stage1/color_0.png"]["url"]

    def finished():
        job = httpx.get(f"{api}/v1/jobs/{job_id}", timeout=10).json()
        seen.append(job)
        return job if job["status"] in ("succeeded", "failed", "canceled") else None

    final = wait_until(finished, 240, f"job {job_id} to finish", interval=0.05)
    assert final["status"] == "succeeded", final["error"]
    assert set(final["outputs"]) == STAGE1_SET | FINAL_ONLY
    # No reader ever saw a partial stage-1 set, or a stage-2 file before the job succeeded.
    for job in seen:
        if job["status"] == "running":
            assert set(job["outputs"]) in (set(), STAGE1_SET), sorted(job["outputs"])
