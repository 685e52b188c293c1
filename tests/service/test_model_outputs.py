"""Thumbnail, turntables, USDZ and OBJ of a preview job, through the real stack and downloaded by their URLs."""

from __future__ import annotations

import io
import json
import zipfile

import httpx
import numpy as np
import pytest
import trimesh
from PIL import Image

from tests.support.service_stack import FAST_OPTIONS
from tests.support.output_checks import arkit_problems, decode_mp4, iou, reference_silhouette
from pipelines.outputs.render import FRONT_THREE_QUARTER, OrbitView
from tests.support.service_stack import poll_until_finished

pytestmark = pytest.mark.slow

MEDIA_TYPES = {
    "stage2/thumbnail.png": "image/png",
    "stage2/turntable.mp4": "video/mp4",
    "stage2/turntable.webp": "image/webp",
    "stage2/output.usdz": "model/vnd.usdz+zip",
    "stage2/output_obj.zip": "application/zip",
    "stage2/output.glb": "model/gltf-binary",
}


@pytest.fixture(scope="module")
def job(s3_stack, sample_photo) -> dict:
    """One preview job that asked for USDZ and OBJ besides the GLB."""
    response = httpx.post(
        f"{s3_stack.api_url}/v1/jobs",
        files={"image": (sample_photo.name, sample_photo.read_bytes(), "image/png")},
        data={"options": json.dumps({**FAST_OPTIONS, "formats": ["usdz", "obj"]})},
    )
    assert response.status_code == 202, response.text
    job, _ = poll_until_finished(s3_stack.api_url, response.json()["id"])
    assert job["status"] == "succeeded", job["error"]
    return job


def download(job: dict, name: str) -> bytes:
    response = httpx.get(job["outputs"][name]["url"])
    assert response.status_code == 200
    assert response.headers["content-type"] == MEDIA_TYPES[name]
    return response.content


def test_outputs_list_every_new_artifact_with_its_media_type(job):
    assert job["options"]["formats"] == ["glb", "usdz", "obj"]
    for name, media_type in MEDIA_TYPES.items():
        assert job["outputs"][name]["media_type"] == media_type
    assert job["outputs"]["results.zip"]["media_type"] == "application/zip"


def test_thumbnail_silhouette_matches_the_glb_seen_from_the_front_three_quarter(job):
    thumbnail = Image.open(io.BytesIO(download(job, "stage2/thumbnail.png")))
    assert (thumbnail.mode, thumbnail.size) == ("RGBA", (512, 512))
    alpha = np.asarray(thumbnail)[..., 3]
    reference = reference_silhouette(download(job, "stage2/output.glb"), FRONT_THREE_QUARTER, 512)
    assert iou(alpha >= 128, reference) > 0.97


def test_turntable_mp4_decodes_to_a_full_turn_of_512_frames(job):
    video = decode_mp4(download(job, "stage2/turntable.mp4"))
    assert (video.codec, video.size, len(video.frames)) == ("h264", (512, 512), 120)
    assert 4.0 <= video.seconds <= 6.0
    glb = download(job, "stage2/output.glb")
    side = reference_silhouette(glb, OrbitView(azimuth=90.0, elevation=8.0), 512)
    assert iou((video.frames[30] < 235).any(axis=2), side) > 0.9


def test_turntable_webp_is_animated(job):
    image = Image.open(io.BytesIO(download(job, "stage2/turntable.webp")))
    assert image.is_animated and image.n_frames == 60 and image.size == (512, 512)
    assert np.asarray(image.convert("RGBA"))[0, 0, 3] == 0, "transparent background"


def test_usdz_passes_the_arkit_compliance_checker(job, tmp_path):
    path = tmp_path / "output.usdz"
    path.write_bytes(download(job, "stage2/output.usdz"))
    assert arkit_problems(path) == []


def test_obj_zip_loads_in_trimesh_with_its_texture(job, tmp_path):
    with zipfile.ZipFile(io.BytesIO(download(job, "stage2/output_obj.zip"))) as archive:
        archive.extractall(tmp_path)
    mesh = trimesh.load(tmp_path / "model.obj", process=False)
    glb = trimesh.load(io.BytesIO(download(job, "stage2/output.glb")), file_type="glb", force="mesh", process=False)
    assert mesh.faces.shape == glb.faces.shape and len(mesh.faces) > 100
    assert mesh.visual.material.image.size == glb.visual.material.baseColorTexture.size


def test_results_zip_holds_the_new_artifacts(job):
    with zipfile.ZipFile(io.BytesIO(httpx.get(job["outputs"]["results.zip"]["url"]).content)) as archive:
        for name in MEDIA_TYPES:
            assert archive.read(name) == download(job, name)
        metadata = json.loads(archive.read("results_metadata.json"))
    assert set(metadata["timings"]["outputs"]) == {"load", "thumbnail", "turntable", "usdz", "obj"}


def test_cli_asks_for_usdz_follows_the_stream_and_downloads_it(s3_stack, sample_photo, tmp_path):
    import subprocess
    import sys

    from client.stack import REPO_ROOT

    done = subprocess.run(
        [sys.executable, "-m", "client.cli", "generate", str(sample_photo), "-o", str(tmp_path), "--url", s3_stack.api_url,
         "--format", "usdz", "--option", "texture_size=512", "--option", "simplify=0.95"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "output.glb", "output.usdz", "output_mesh.ply", "results.zip", "thumbnail.png"
    ]
    assert arkit_problems(tmp_path / "output.usdz") == []
