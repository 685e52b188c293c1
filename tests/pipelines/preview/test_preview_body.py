"""The preview is a body, not a billboard: depth from the pose, a real back, one clean piece.

Every check looks at what a user sees: the model rendered from the front, the
side and the back (the stage-1 views, and front renders shaded by the same
colour function), on the sample photos and on composites made from them.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
import trimesh
from PIL import Image, ImageDraw

from pipelines.base import VIEW_SIZE
from pipelines.person import pose as mp
from pipelines.preview.renderer import STAGE1_VIEWS, OrthoRenderer
from tests.support.preview_runs import PreviewRun, run_preview
from tests.support.requirements import require_pose_model

pytestmark = pytest.mark.slow


# --- what the tests look at --------------------------------------------------------------


def _silhouette(image: Image.Image) -> np.ndarray:
    return (np.asarray(image.convert("RGB")) < 230).any(axis=-1)


def _skeleton(run: PreviewRun):
    skeleton = run.views.extras["skeleton"]
    assert skeleton is not None, f"{run.name}: no pose found"
    return skeleton


def _px(x: float, z: float) -> tuple[int, int]:
    """World (x, z) -> (col, row) of a 768 px view."""
    return int((x + 0.5) * VIEW_SIZE), int((0.5 - z) * VIEW_SIZE)


def _shaded(run: PreviewRun, view: int) -> np.ndarray:
    """(768, 768, 3) uint8 render of the model from stage-1 view ``view``, on white."""
    mesh, normals = run.views.extras["mesh"], run.views.extras["vertex_normals"]
    (buffers,) = OrthoRenderer().render(mesh.vertices, normals, mesh.faces, (STAGE1_VIEWS[view],), VIEW_SIZE)
    rgb = run.views.extras["appearance"].colors(buffers.position, buffers.normal)
    rgb = np.where(buffers.mask[..., None], rgb, 1.0)
    return np.round(np.clip(rgb, 0, 1) * 255).astype(np.uint8)


def _torso_row(run: PreviewRun) -> int:
    """Canvas row 40 % of the way from the shoulders down to the hips."""
    joints = _skeleton(run).joints
    shoulders = joints[[mp.LEFT_SHOULDER, mp.RIGHT_SHOULDER], 2].mean()
    hips = joints[[mp.LEFT_HIP, mp.RIGHT_HIP], 2].mean()
    return _px(0.0, shoulders + 0.4 * (hips - shoulders))[1]


def _run_through(mask_row: np.ndarray, at: int) -> tuple[int, int]:
    """[first, last] column of the run of True in ``mask_row`` containing (or nearest) ``at``."""
    cols = np.flatnonzero(mask_row)
    at = int(cols[np.argmin(np.abs(cols - at))])
    left, right = at, at
    while left > 0 and mask_row[left - 1]:
        left -= 1
    while right < len(mask_row) - 1 and mask_row[right + 1]:
        right += 1
    return left, right


def _torso_side_extent(run: PreviewRun) -> tuple[float, float, float]:
    """(front y, back y, width) of the torso at its mid-row: the side view's (view 1, column = y)
    run through the torso's mid-plane and the front view's run through the spine."""
    skeleton = _skeleton(run)
    row = _torso_row(run)
    joints = skeleton.joints
    spine_x = joints[[mp.LEFT_SHOULDER, mp.RIGHT_SHOULDER, mp.LEFT_HIP, mp.RIGHT_HIP], 0].mean()
    left, right = _run_through(_silhouette(run.views.normals[0])[row], _px(spine_x, 0.0)[0])
    mid_y = float(skeleton.torso_depth_at(np.float32(spine_x), np.float32(0.5 - (row + 0.5) / VIEW_SIZE)))
    # The body was re-centred in depth after the skeleton was placed: find the torso in the side view
    # as the run through the depth of the mesh's torso column.
    mesh = run.views.extras["mesh"]
    near = np.abs(mesh.vertices[:, 0] - spine_x) < 0.01
    near &= np.abs(mesh.vertices[:, 2] - (0.5 - (row + 0.5) / VIEW_SIZE)) < 0.01
    column_centre = float(mesh.vertices[near, 1].mean()) if near.any() else mid_y
    side = _silhouette(run.views.normals[1])[row]
    front_c, back_c = _run_through(side, _px(column_centre, 0.0)[0])
    return front_c / VIEW_SIZE - 0.5, (back_c + 1) / VIEW_SIZE - 0.5, (right - left + 1) / VIEW_SIZE


def _faces_found(image: np.ndarray, box: tuple[int, int, int, int]) -> int:
    """Faces MediaPipe's bundled face detector finds in ``box`` (l, t, r, b) of ``image``, scaled
    up to 384 px (the full-range model looks for faces of any size in the crop)."""
    from mediapipe.python.solutions import face_detection

    crop = Image.fromarray(image).crop(box).resize((384, 384), Image.BICUBIC)
    with face_detection.FaceDetection(model_selection=1, min_detection_confidence=0.5) as detector:
        result = detector.process(np.ascontiguousarray(np.asarray(crop)))
    return len(result.detections or [])


def _head_box(run: PreviewRun) -> tuple[int, int, int, int]:
    head = next(c for c in _skeleton(run).limbs if c.name == "head")
    col, row = _px(head.start[0], head.start[2])
    half = int(3.0 * head.radius * VIEW_SIZE)
    return max(col - half, 0), max(row - half, 0), min(col + half, VIEW_SIZE), min(row + half, VIEW_SIZE)


# --- geometry -------------------------------------------------------------------------------


def test_mesh_is_one_watertight_piece_with_enough_triangles(sample_runs):
    for run in sample_runs:
        mesh = run.views.extras["mesh"]
        body = trimesh.Trimesh(mesh.vertices, mesh.faces, process=False)
        assert body.is_watertight and body.is_winding_consistent, run.name
        assert len(body.split(only_watertight=False)) == 1, run.name
        assert len(mesh.faces) >= 20000, run.name  # before stage 2's `simplify`
        ply = trimesh.load(io.BytesIO(run.mesh.mesh_ply), file_type="ply", process=False)
        assert ply.is_watertight and len(ply.split(only_watertight=False)) == 1, run.name


def test_torso_has_a_body_like_depth(sample_runs):
    require_pose_model()
    for run in sample_runs:
        front, back, width = _torso_side_extent(run)
        assert 0.4 <= (back - front) / width <= 0.8, (run.name, back - front, width)


def test_raised_limb_stands_out_of_the_torso_in_the_side_view(sample_runs):
    """person_016 sits with his thighs towards the camera, person_000 squats with his knees
    forward: in the side view the knee row reaches in front of the torso's mid-plane by at
    least a quarter of the torso's depth."""
    require_pose_model()
    checked = 0
    for run in sample_runs:
        if run.name not in ("person_000", "person_016"):
            continue
        front, back, _ = _torso_side_extent(run)
        mid_plane = (front + back) / 2
        joints = _skeleton(run).joints
        side = _silhouette(run.views.normals[1])
        for knee in (mp.LEFT_KNEE, mp.RIGHT_KNEE):
            row = _px(0.0, joints[knee, 2])[1]
            nearest = np.flatnonzero(side[row])[0] / VIEW_SIZE - 0.5  # front-most y in the knee's row
            assert mid_plane - nearest >= 0.25 * (back - front), (run.name, knee, mid_plane, nearest)
        checked += 1
    assert checked == 2


# --- appearance -----------------------------------------------------------------------------


def test_face_on_the_front_and_none_on_the_back(sample_runs):
    require_pose_model()
    for run in sample_runs:
        box = _head_box(run)
        assert _faces_found(_shaded(run, 0), box) >= 1, run.name
        back = np.asarray(run.views.colors[2])  # stored mirrored: column = +x, like the front
        assert _faces_found(back, box) == 0, run.name


def _dominant_colour(pixels: np.ndarray) -> np.ndarray:
    """(3,) the centre of the most populated 32-level RGB bin of (N, 3) pixels."""
    bins = pixels.astype(int) // 32
    keys = bins[:, 0] * 64 + bins[:, 1] * 8 + bins[:, 2]
    mode = np.bincount(keys).argmax()
    return pixels[keys == mode].mean(axis=0)


def _torso_patch(run: PreviewRun, half: float = 0.25) -> tuple[slice, slice]:
    """Rows and columns of a patch in the middle of the torso (``half`` of its width each side)."""
    torso = _skeleton(run).torso  # (4, 2) x, z
    centre = torso.mean(axis=0)
    width = float(np.linalg.norm(torso[0] - torso[1]))
    col, row = _px(*centre)
    size = int(half * width * VIEW_SIZE)
    return slice(row - size, row + size), slice(col - size, col + size)


def test_back_of_the_torso_has_the_clothes_colour(sample_runs):
    require_pose_model()
    for run in sample_runs:
        rows, cols = _torso_patch(run)
        photo = np.asarray(run.views.colors[0], dtype=np.float32)[rows, cols].reshape(-1, 3)
        back = np.asarray(run.views.colors[2], dtype=np.float32)[rows, cols].reshape(-1, 3)
        clothes = _dominant_colour(photo)
        assert np.abs(np.median(back, axis=0) - clothes).max() <= 40, (run.name, clothes, np.median(back, axis=0))


def test_a_print_on_the_shirt_is_not_on_the_back(preview, sample_runs, sample_photos):
    """Paint a bright yellow square (a fifth of the torso's width) onto person_016's navy T-shirt."""
    require_pose_model()
    run = next(r for r in sample_runs if r.name == "person_016")
    rows, cols = _torso_patch(run, half=0.1)
    canvas = run.views.input_image.copy()
    ImageDraw.Draw(canvas).rectangle((cols.start, rows.start, cols.stop, rows.stop), fill=(255, 220, 0, 255))
    printed = run_preview(preview, "printed", canvas)
    front = np.asarray(printed.views.colors[0], dtype=np.float32)[rows, cols]
    assert (np.abs(front - [255, 220, 0]).max(axis=-1) < 30).mean() > 0.9  # the print is on the photo
    back = np.asarray(printed.views.colors[2], dtype=np.float32)[rows, cols]
    yellowish = (back[..., 0] > 150) & (back[..., 1] > 130) & (back[..., 2] < 100)
    assert yellowish.mean() < 0.02
    shirt = _dominant_colour(np.asarray(run.views.colors[0], dtype=np.float32)[_torso_patch(run)].reshape(-1, 3))
    assert np.abs(np.median(back.reshape(-1, 3), axis=0) - shirt).max() <= 40
