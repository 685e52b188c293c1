"""Body pose from MediaPipe Pose: the samples' people, a small person in a large photo, and nobody."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from bench.person_photos import BACKGROUNDS, composite, iou, small_in_large, with_margin
from tests.support.not_people import cube_cutout, texture
from tests.support.requirements import require_pose_model
from pipelines.person import pose
from pipelines.person.pose import NAMES, estimate_pose


@pytest.fixture(autouse=True)
def _pose_model():
    require_pose_model()


def test_names_and_index_constants_follow_the_model():
    from mediapipe.python.solutions.pose import PoseLandmark

    assert NAMES == tuple(landmark.name for landmark in PoseLandmark)
    assert all(getattr(pose, name) == index for index, name in enumerate(NAMES))


def test_each_sample_gives_a_whole_body_pose(sample_photos):
    for path in sample_photos:
        cut = with_margin(Image.open(path).convert("RGBA"))
        photo = composite(cut, BACKGROUNDS["gradient"](*cut.size), "gradient")
        rgb = np.asarray(photo.photo)
        body = estimate_pose(rgb)
        assert body is not None, path.name
        height, width = rgb.shape[:2]
        assert body.landmarks.shape == (33, 2) and body.landmarks.dtype == np.float32
        assert body.depth.shape == (33,) and body.depth.dtype == np.float32
        assert body.visibility.shape == (33,) and body.visibility.min() >= 0 and body.visibility.max() <= 1
        assert body.world.shape == (33, 3) and body.world.dtype == np.float32
        assert body.mask is not None and body.mask.shape == (height, width) and body.mask.dtype == np.float32
        # Landmarks sit on the person: the nose above the hips, both inside the true silhouette's box.
        ys, xs = np.nonzero(photo.truth)
        for index in (pose.NOSE, pose.LEFT_SHOULDER, pose.RIGHT_SHOULDER, pose.LEFT_HIP, pose.RIGHT_HIP):
            x, y = body.landmarks[index]
            assert xs.min() - 10 <= x <= xs.max() + 10 and ys.min() - 10 <= y <= ys.max() + 10, (path.name, NAMES[index])
        hips_y = body.landmarks[[pose.LEFT_HIP, pose.RIGHT_HIP], 1].mean()
        assert body.landmarks[pose.NOSE, 1] < hips_y
        # World landmarks are metres around the hips; depth is ~0 at the hips' midpoint.
        assert np.abs(body.world[[pose.LEFT_HIP, pose.RIGHT_HIP]].mean(axis=0)).max() < 0.05
        assert abs(float(body.depth[[pose.LEFT_HIP, pose.RIGHT_HIP]].mean())) < 0.1 * height
        assert iou(body.mask > 0.5, photo.truth) >= 0.9, path.name


@pytest.mark.slow  # the tile search of a 12 MP photo
@pytest.mark.parametrize("background", ["grey", "photo"])
def test_a_small_person_in_a_large_photo_is_found(sample_photos, background):
    """400 px tall in 3000 x 3000: the coarse pass misses them, the tile search finds them."""
    for path in sample_photos:
        canvas = small_in_large(Image.open(path).convert("RGBA"))
        photo = composite(canvas, BACKGROUNDS[background](*canvas.size), background)
        body = estimate_pose(np.asarray(photo.photo))
        assert body is not None, path.name
        ys, xs = np.nonzero(photo.truth)
        nose_x, nose_y = body.landmarks[pose.NOSE]
        assert xs.min() <= nose_x <= xs.max() and ys.min() <= nose_y <= ys.min() + 0.3 * (ys.max() - ys.min())
        assert iou(body.mask > 0.5, photo.truth) >= 0.85, path.name


@pytest.mark.parametrize("name", ["noise", "photo", "texture", "cube"])
def test_nobody_is_found_where_there_is_no_person(name):
    if name == "texture":
        rgb = np.asarray(texture())
    elif name == "cube":
        cube = cube_cutout()
        rgb = np.asarray(composite(cube, BACKGROUNDS["grey"](*cube.size), "grey").photo)
    else:
        rgb = BACKGROUNDS[name](1200, 900)
    assert estimate_pose(rgb) is None


def test_the_bundled_model_is_used_and_nothing_is_downloaded(monkeypatch):
    """Complexity 1 is pose_landmark_full.tflite, shipped in the wheel; 0 and 2 would download."""
    from mediapipe.python.solutions import download_utils

    def refuse(*args, **kwargs):
        raise AssertionError(f"mediapipe tried to download {args}")

    monkeypatch.setattr(download_utils, "download_oss_model", refuse)
    monkeypatch.setattr(pose, "_POSE", None)
    rgb = np.full((256, 256, 3), 200, dtype=np.uint8)
    assert estimate_pose(rgb) is None
    assert pose._POSE is not None


def test_rejects_images_that_are_not_rgb_uint8():
    with pytest.raises(ValueError):
        estimate_pose(np.zeros((64, 64), dtype=np.uint8))
    with pytest.raises(ValueError):
        estimate_pose(np.zeros((64, 64, 4), dtype=np.uint8))
