"""The preview method end to end on real photos: files, geometry, GLB, progress, honesty."""

from __future__ import annotations

import io

import numpy as np
import pytest
import trimesh
from PIL import Image

from tests.support.gltf_validation import validate_glb
from pipelines.artifacts import STAGE1_FILES, STAGE2_FILES, write_stage1, write_stage2
from pipelines.base import VIEW_SIZE, PipelineInputError
from pipelines.preprocess import on_white
from pipelines.registry import load_pipelines
from tests.support.preview_runs import run_preview
from tests.support.requirements import require_pose_model

pytestmark = pytest.mark.slow


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def _silhouette(image: Image.Image) -> np.ndarray:
    """Pixels that are not (near) white: the official mask threshold is 230/255."""
    return (np.asarray(image.convert("RGB")) < 230).any(axis=-1)


def _glb_mesh(glb: bytes) -> trimesh.Trimesh:
    scene = trimesh.load(io.BytesIO(glb), file_type="glb")
    (mesh,) = scene.geometry.values()
    return mesh


def test_registry_loads_the_honest_preview():
    pipelines = load_pipelines("preview")
    assert pipelines.name == "preview" and pipelines.device == "cpu"
    assert "not SyncHuman" in pipelines.description
    assert "preview" in pipelines.description.lower()


def test_artifacts_have_the_official_names_and_shapes(sample_runs, tmp_path):
    for run in sample_runs:
        stage1 = write_stage1(run.views, tmp_path / run.name / "stage1")
        stage2 = write_stage2(run.mesh, tmp_path / run.name / "stage2")
        assert sorted(p.name for p in stage1) == sorted(STAGE1_FILES)
        assert sorted(p.name for p in stage2) == sorted(STAGE2_FILES)
        for name in [f"color_{i}.png" for i in range(5)] + [f"normal_{i}.png" for i in range(5)]:
            with Image.open(tmp_path / run.name / "stage1" / name) as image:
                assert image.size == (VIEW_SIZE, VIEW_SIZE) and image.mode == "RGB"
        with Image.open(tmp_path / run.name / "stage1" / "input.png") as image:
            assert image.size == (VIEW_SIZE, VIEW_SIZE) and image.mode == "RGBA"
        latent = np.load(tmp_path / run.name / "stage1" / "latent.npz")
        assert list(latent.keys()) == ["coords"]
        coords = latent["coords"]
        assert coords.dtype == np.float32 and coords.ndim == 2 and coords.shape[1] == 4
        assert len(coords) > 1000
        assert (coords[:, 0] == 0).all() and coords[:, 1:].min() >= 0 and coords[:, 1:].max() < 64


def test_front_view_silhouette_matches_the_input_mask(sample_runs):
    for run in sample_runs:
        mask = np.asarray(run.views.input_image.getchannel("A")) > 0
        # The normal map is rendered from the mesh (a unit normal is never near white).
        assert _iou(_silhouette(run.views.normals[0]), mask) >= 0.95, run.name
        # The front colour view is the preprocessed input on white, as the official
        # stage 1 overrides it (white clothes make a colour threshold meaningless).
        expected = np.round(on_white(run.views.input_image) * 255).astype(np.uint8)
        assert np.array_equal(np.asarray(run.views.colors[0]), expected)


def test_views_follow_the_official_orientation(sample_runs):
    for run in sample_runs:
        front = _silhouette(run.views.normals[0])
        right, back, left = (_silhouette(run.views.normals[i]) for i in (1, 2, 3))
        # Back and left are stored mirrored, so the back's outline equals the front's
        # (every line of sight crosses the body once) and the left's equals the right's.
        assert _iou(back, front) >= 0.97, run.name
        assert _iou(left, right) >= 0.97, run.name
        # The side views show the same height and a thinner body.
        rows = lambda m: np.flatnonzero(m.any(axis=1))  # noqa: E731
        assert abs(rows(right)[0] - rows(front)[0]) <= 3 and abs(rows(right)[-1] - rows(front)[-1]) <= 3
        assert 0 < right.sum() < front.sum()
        # World-space normals: the front view sees normals towards -y (green < 0.5),
        # the back view towards +y, the right view (+x camera) towards +x (red > 0.5).
        n0 = np.asarray(run.views.normals[0], dtype=np.float32)[front] / 255.0
        n2 = np.asarray(run.views.normals[2], dtype=np.float32)[back] / 255.0
        n1 = np.asarray(run.views.normals[1], dtype=np.float32)[right] / 255.0
        assert np.median(n0[:, 1]) < 0.3 and np.median(n2[:, 1]) > 0.7 and np.median(n1[:, 0]) > 0.7
        # The back is a completion, not a blank.
        assert np.asarray(run.views.colors[2])[back].std() > 10


def test_face_view_is_the_official_close_up(sample_runs):
    for run in sample_runs:
        crop = run.views.input_image.crop((256, 0, 512, 256)).resize((VIEW_SIZE, VIEW_SIZE))
        assert np.array_equal(np.asarray(run.views.colors[4]), np.round(on_white(crop) * 255).astype(np.uint8))
        # Its normal map is the body rendered through the same 3x window.
        mask = np.asarray(crop.getchannel("A")) > 127
        assert _iou(_silhouette(run.views.normals[4]), mask) >= 0.95, run.name


def test_side_view_agrees_with_the_occupancy(sample_runs):
    """View 1 (camera at +x, column = +y) shows the occupancy projected along x."""
    for run in sample_runs:
        side = _silhouette(run.views.normals[1]).reshape(64, 12, 64, 12).mean(axis=(1, 3)) > 0.5
        projected = np.zeros((64, 64), dtype=bool)
        y, z = run.views.coords[:, 2], run.views.coords[:, 3]
        projected[63 - z, y] = True  # row 63 - z, column y (spec section 4.1)
        assert _iou(side, projected) >= 0.95, run.name


def test_occupancy_lies_inside_the_silhouette_extrusion(sample_runs):
    for run in sample_runs:
        mask = np.asarray(run.views.input_image.getchannel("A")) > 0
        x, z = run.views.coords[:, 1], run.views.coords[:, 3]
        # Voxel (x, z) covers canvas columns 12x .. 12x + 11 and rows 12(63 - z) .. + 11.
        cells = mask.reshape(64, 12, 64, 12).any(axis=(1, 3))  # (64 rows, 64 cols)
        assert cells[63 - z, x].all(), run.name
        # And it fills the silhouette: most silhouette cells hold at least one voxel.
        full = mask.reshape(64, 12, 64, 12).all(axis=(1, 3))
        occupied = np.zeros((64, 64), dtype=bool)
        occupied[63 - z, x] = True
        assert occupied[full].mean() >= 0.95, run.name


def test_mesh_is_closed_and_the_glb_is_valid(sample_runs):
    for run in sample_runs:
        ply = trimesh.load(io.BytesIO(run.mesh.mesh_ply), file_type="ply", process=False)
        assert ply.is_watertight and ply.is_winding_consistent and ply.volume > 0, run.name
        assert ply.visual.vertex_colors.shape[0] == len(ply.vertices)
        # z-up official frame, inside the unit cube.
        assert np.abs(ply.vertices).max() <= 0.5
        glb = _glb_mesh(run.mesh.glb)
        assert len(glb.faces) == run.mesh.num_faces == len(ply.faces)
        # The GLB holds the same triangles (re-indexed at UV seams), rotated to y-up:
        # official (x, y, z) -> glTF (x, z, -y).
        as_z_up = np.asarray(glb.vertices)[:, [0, 2, 1]] * np.array([1.0, -1.0, 1.0])
        before = np.sort(np.sort(ply.vertices[ply.faces].reshape(-1, 9), axis=1), axis=0)
        after = np.sort(np.sort(as_z_up[glb.faces].reshape(-1, 9), axis=1), axis=0)
        np.testing.assert_allclose(after, before, atol=1e-5)
        texture = _glb_mesh(run.mesh.glb).visual.material.baseColorTexture
        assert texture.size == (1024, 1024)
        assert len(run.mesh.glb) <= 4 * 1024 * 1024
        report = validate_glb(run.mesh.glb)
        assert report["issues"]["numErrors"] == 0, report["issues"]["messages"][:5]


def test_texture_shows_the_photo_on_the_front(sample_runs):
    """The GLB's front, sampled through its own UVs, has the photo's colours."""
    run = sample_runs[0]
    mesh = _glb_mesh(run.mesh.glb)
    texture = np.asarray(mesh.visual.material.baseColorTexture.convert("RGB"), dtype=np.float32)
    uv = np.asarray(mesh.visual.uv)
    # glTF y-up, front towards +Z: front-facing vertices have normal z > 0.9.
    front = mesh.vertex_normals[:, 2] > 0.9
    cols = np.clip((uv[front, 0] * 1024).astype(int), 0, 1023)
    rows = np.clip(((1.0 - uv[front, 1]) * 1024).astype(int), 0, 1023)
    sampled = texture[rows, cols]  # (K, 3)
    # The same points in the photo: x = X, z = Y in the official frame.
    canvas = np.asarray(run.views.colors[0], dtype=np.float32)
    px = np.clip(((mesh.vertices[front, 0] + 0.5) * 768).astype(int), 0, 767)
    py = np.clip(((0.5 - mesh.vertices[front, 1]) * 768).astype(int), 0, 767)
    photo = canvas[py, px]
    assert np.median(np.abs(sampled - photo).mean(axis=1)) < 20


def test_progress_is_reported_per_step(sample_runs):
    run = sample_runs[0]
    assert run.stage1_steps == [("stage1", i, 5) for i in range(1, 6)]
    assert run.stage2_steps == [("stage2", i, 5) for i in range(1, 6)]


def test_a_raising_callback_cancels_the_run(preview, sample_photos):
    class Cancelled(Exception):
        pass

    calls = []

    def cancel_at_step_2(stage, step, total):
        calls.append((stage, step))
        if step == 2:
            raise Cancelled

    with pytest.raises(Cancelled):
        preview.stage1(Image.open(sample_photos[0]), callback=cancel_at_step_2)
    assert calls == [("stage1", 1), ("stage1", 2)]


def test_same_input_gives_identical_outputs(preview, sample_runs):
    run = sample_runs[0]
    again = run_preview(preview, run.name, run.source)
    assert np.array_equal(again.views.coords, run.views.coords)
    for a, b in zip(again.views.colors + again.views.normals, run.views.colors + run.views.normals):
        assert np.array_equal(np.asarray(a), np.asarray(b))
    assert again.mesh.glb == run.mesh.glb
    assert again.mesh.mesh_ply == run.mesh.mesh_ply


def test_stage2_rebuilds_the_body_from_stage1_files_alone(preview, sample_runs):
    """A stage-1 output read back from disk (no in-memory extras) gives the same model."""
    run = sample_runs[0]
    bare = type(run.views)(
        source=run.views.source,
        input_image=run.views.input_image,
        colors=run.views.colors,
        normals=run.views.normals,
        coords=run.views.coords,
    )
    again = preview.stage2(bare)
    assert again.glb == run.mesh.glb


def test_opaque_photo_end_to_end(preview, rgb_photo):
    require_pose_model()
    photo, truth = rgb_photo
    run = run_preview(preview, "rgb", photo)
    mask = np.asarray(run.views.input_image.getchannel("A")) > 0
    assert _iou(_silhouette(run.views.normals[0]), mask) >= 0.95
    assert validate_glb(run.mesh.glb)["issues"]["numErrors"] == 0
    ply = trimesh.load(io.BytesIO(run.mesh.mesh_ply), file_type="ply", process=False)
    assert ply.is_watertight


@pytest.mark.parametrize(
    "image",
    [
        Image.new("RGBA", (640, 640), (0, 0, 0, 0)),
        Image.new("RGBA", (640, 640), (0, 0, 0, 0)).crop((0, 0, 640, 640)),
    ],
    ids=["transparent", "transparent-copy"],
)
def test_bad_input_is_refused_before_any_work(preview, image):
    with pytest.raises(PipelineInputError) as info:
        preview.stage1(image)
    assert info.value.code == "no_foreground"


def test_texture_noise_is_refused(preview):
    require_pose_model()
    noise = np.random.default_rng(3).integers(0, 256, size=(512, 512, 3), dtype=np.uint8)
    with pytest.raises(PipelineInputError) as info:
        preview.stage1(Image.fromarray(noise, mode="RGB"))
    assert info.value.code == "no_person"


def test_tiny_object_is_refused(preview):
    image = Image.new("RGBA", (768, 768), (0, 0, 0, 0))
    image.paste((40, 60, 200, 255), (300, 300, 306, 320))
    with pytest.raises(PipelineInputError) as info:
        preview.stage1(image)
    assert info.value.code == "no_foreground"
