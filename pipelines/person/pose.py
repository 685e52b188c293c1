"""Body pose of the most prominent person in a photo, from MediaPipe Pose.

The model is MediaPipe's legacy pose solution (``model_complexity=1``): its
two files, ``pose_detection.tflite`` and ``pose_landmark_full.tflite``, ship in
the ``mediapipe`` wheel of the ``segment`` extra, so nothing is downloaded at
run time (complexity 0 and 2 would download their models; they are not used).

The detector looks at a 224x224 version of the image, so a small person in a
large photo would vanish.  :func:`estimate_pose` therefore works in two passes:

1. **find**: the photo scaled to at most :data:`FIND_SIZE` pixels on its long
   side; if nobody is found, overlapping square tiles of half, then a quarter
   of the photo's shorter side (each scaled to :data:`TILE_SIZE`), so a person
   down to about an eighth of the shorter side is found;
2. **refine**: a square crop around the person found, taken from the full
   resolution photo (scaled to at most :data:`REFINE_SIZE` pixels, the landmark
   model's own input being 256x256), gives the landmarks, depth, visibility and
   segmentation that are returned, in the coordinates of the photo given.

Tiles of busy backgrounds often fool the detector, so every candidate must be
found again by the refining pass, with both shoulders visible, to count; the
first that is wins.  A 12 MP photo without a person costs about 100 detector
runs (1-1.5 s of CPU); one with a person found at the coarse scale, two.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import numpy as np

from pipelines.person.scaling import downscale

NAMES: tuple[str, ...] = (
    "NOSE",
    "LEFT_EYE_INNER",
    "LEFT_EYE",
    "LEFT_EYE_OUTER",
    "RIGHT_EYE_INNER",
    "RIGHT_EYE",
    "RIGHT_EYE_OUTER",
    "LEFT_EAR",
    "RIGHT_EAR",
    "MOUTH_LEFT",
    "MOUTH_RIGHT",
    "LEFT_SHOULDER",
    "RIGHT_SHOULDER",
    "LEFT_ELBOW",
    "RIGHT_ELBOW",
    "LEFT_WRIST",
    "RIGHT_WRIST",
    "LEFT_PINKY",
    "RIGHT_PINKY",
    "LEFT_INDEX",
    "RIGHT_INDEX",
    "LEFT_THUMB",
    "RIGHT_THUMB",
    "LEFT_HIP",
    "RIGHT_HIP",
    "LEFT_KNEE",
    "RIGHT_KNEE",
    "LEFT_ANKLE",
    "RIGHT_ANKLE",
    "LEFT_HEEL",
    "RIGHT_HEEL",
    "LEFT_FOOT_INDEX",
    "RIGHT_FOOT_INDEX",
)
"""MediaPipe's 33 landmark names, in the model's order ("left" is the person's left)."""

(
    NOSE,
    LEFT_EYE_INNER,
    LEFT_EYE,
    LEFT_EYE_OUTER,
    RIGHT_EYE_INNER,
    RIGHT_EYE,
    RIGHT_EYE_OUTER,
    LEFT_EAR,
    RIGHT_EAR,
    MOUTH_LEFT,
    MOUTH_RIGHT,
    LEFT_SHOULDER,
    RIGHT_SHOULDER,
    LEFT_ELBOW,
    RIGHT_ELBOW,
    LEFT_WRIST,
    RIGHT_WRIST,
    LEFT_PINKY,
    RIGHT_PINKY,
    LEFT_INDEX,
    RIGHT_INDEX,
    LEFT_THUMB,
    RIGHT_THUMB,
    LEFT_HIP,
    RIGHT_HIP,
    LEFT_KNEE,
    RIGHT_KNEE,
    LEFT_ANKLE,
    RIGHT_ANKLE,
    LEFT_HEEL,
    RIGHT_HEEL,
    LEFT_FOOT_INDEX,
    RIGHT_FOOT_INDEX,
) = range(33)

FIND_SIZE = 512
"""Long side, in pixels, of the downscaled copy searched for a person."""
TILE_SIZE = 256
"""Pixels a search tile is scaled to (the detector itself looks at 224x224)."""
TILE_LEVELS = (2, 4)
"""Search tiles are the photo's shorter side divided by these, in turn (50 % overlap)."""
MIN_TILE = 512
"""Smallest search tile, in photo pixels: people under about 200 px tall are not looked for in tiles
(each tile costs about 15 ms of CPU, and a photo without a person must be refused quickly)."""
REFINE_SIZE = 768
"""Long side, in pixels, the person's crop is scaled down to (at most) before refining."""
MIN_SHOULDER_VISIBILITY = 0.5
"""Mean visibility of the two shoulders a detection needs to count as a person."""
CROP_MARGIN = 0.35
"""Margin added on every side of the landmarks' box, as a fraction of its longer side."""


@dataclass(frozen=True)
class BodyPose:
    """One person's pose, in the pixel coordinates of the image it was estimated on."""

    landmarks: np.ndarray
    """(33, 2) float32: x and y in pixels, indexed by :data:`NAMES`."""
    depth: np.ndarray
    """(33,) float32: MediaPipe's relative z scaled to pixels; smaller is nearer the
    camera, the hips' midpoint is about 0."""
    visibility: np.ndarray
    """(33,) float32 in [0, 1]: how likely each landmark is visible (not occluded)."""
    world: np.ndarray
    """(33, 3) float32: metres, centred between the hips (MediaPipe world landmarks)."""
    mask: np.ndarray | None
    """(H, W) float32 person probability from the pose model's segmentation, the size
    of the image; None when the model gave no mask."""


def estimate_pose(rgb: np.ndarray) -> BodyPose | None:
    """(H, W, 3) uint8 RGB -> the body pose of the most prominent person, or None if no person.

    Raises ImportError when MediaPipe (the ``segment`` extra) is not installed.
    """
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"estimate_pose needs (H, W, 3) uint8 RGB, got {rgb.shape} {rgb.dtype}")
    height, width = rgb.shape[:2]
    for points, window in _candidates(rgb):
        for left, top, right, bottom in (_crop_box(points, width, height), window):
            refined = _run_scaled(rgb[top:bottom, left:right], REFINE_SIZE)
            if refined is not None and _plausible(refined):
                return _in_photo(refined, (left, top, right, bottom), width, height)
    return None


# --- internals -------------------------------------------------------------------------

_Result = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, "np.ndarray | None"]
"""(points (33, 2), depth (33,), visibility (33,), world (33, 3), mask (h, w) or None)."""


def _in_photo(refined: _Result, box: tuple[int, int, int, int], width: int, height: int) -> BodyPose:
    """A result on the crop `box` (left, top, right, bottom) as a pose in the (width x height) photo."""
    left, top, right, bottom = box
    points, depth, visibility, world, crop_mask = refined
    points = points + np.array([left, top], dtype=np.float32)
    mask = None
    if crop_mask is not None:  # scaled straight into its place in the photo-sized mask
        mask = np.zeros((height, width), dtype=np.float32)
        place = mask[top:bottom, left:right]
        cv2.resize(crop_mask, (right - left, bottom - top), dst=place, interpolation=cv2.INTER_LINEAR)
    return BodyPose(landmarks=points, depth=depth, visibility=visibility, world=world, mask=mask)


def _candidates(rgb: np.ndarray) -> Iterator[tuple[np.ndarray, tuple[int, int, int, int]]]:
    """Where a person may be: ((33, 2) landmark pixels in the photo, (left, top, right, bottom) window).

    The whole photo first; then, tile by tile, every tile in which the detector
    fires (tiles of a busy background often do: each candidate is verified by
    the refining pass).
    """
    height, width = rgb.shape[:2]
    found = _run_scaled(rgb, FIND_SIZE)
    if found is not None:
        yield found[0], (0, 0, width, height)
    for level in TILE_LEVELS:
        tile = min(height, width) // level
        if tile < MIN_TILE:
            break
        scale = TILE_SIZE / tile
        small = downscale(rgb, (round(height * scale), round(width * scale)))
        for top in _tile_starts(small.shape[0], TILE_SIZE, TILE_SIZE // 2):
            for left in _tile_starts(small.shape[1], TILE_SIZE, TILE_SIZE // 2):
                result = _run(np.ascontiguousarray(small[top : top + TILE_SIZE, left : left + TILE_SIZE]))
                if result is None:
                    continue
                points = (result[0] + np.array([left, top], dtype=np.float32)) / np.float32(scale)
                window = (
                    int(left / scale),
                    int(top / scale),
                    min(width, int(np.ceil((left + TILE_SIZE) / scale))),
                    min(height, int(np.ceil((top + TILE_SIZE) / scale))),
                )
                yield points, window


def _plausible(result: _Result) -> bool:
    """A detection with both shoulders on average visible (texture false alarms rarely have them)."""
    visibility = result[2]
    return float(visibility[[LEFT_SHOULDER, RIGHT_SHOULDER]].mean()) >= MIN_SHOULDER_VISIBILITY


def _tile_starts(length: int, tile: int, step: int) -> list[int]:
    """Start offsets of tiles of `tile` pixels every `step` pixels that cover `length`."""
    if length <= tile:
        return [0]
    starts = list(range(0, length - tile, step))
    return starts + [length - tile]


def _crop_box(points: np.ndarray, width: int, height: int) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) square-ish box around the landmarks plus a margin, in the image."""
    low, high = points.min(axis=0), points.max(axis=0)
    centre = (low + high) / 2
    half = max(high - low) * (0.5 + CROP_MARGIN)
    left = int(max(0, np.floor(centre[0] - half)))
    top = int(max(0, np.floor(centre[1] - half)))
    right = int(min(width, np.ceil(centre[0] + half)))
    bottom = int(min(height, np.ceil(centre[1] + half)))
    if right - left < 2 or bottom - top < 2:
        return 0, 0, width, height
    return left, top, right, bottom


def _run_scaled(rgb: np.ndarray, size: int) -> _Result | None:
    """Run the model on `rgb` scaled to at most `size` on its long side.

    Landmarks and depth are in `rgb`'s pixels; the mask stays at the size the model ran on.
    """
    height, width = rgb.shape[:2]
    scale = min(1.0, size / max(height, width))
    small = rgb
    if scale < 1.0:
        small = downscale(rgb, (max(1, round(height * scale)), max(1, round(width * scale))))
    result = _run(small)
    if result is None:
        return None
    points, depth, visibility, world, mask = result
    sx, sy = width / small.shape[1], height / small.shape[0]
    points = points * np.array([sx, sy], dtype=np.float32)
    depth = depth * np.float32(sx)
    return points, depth, visibility, world, mask


def _run(rgb: np.ndarray) -> _Result | None:
    """One pass of MediaPipe Pose on a (h, w, 3) uint8 image; results in its pixels."""
    pose, lock = _pose_model()
    height, width = rgb.shape[:2]
    with lock:  # a MediaPipe graph is not re-entrant
        result = pose.process(np.ascontiguousarray(rgb))
    if result.pose_landmarks is None:
        return None
    marks = result.pose_landmarks.landmark
    normalised = np.array([(m.x, m.y, m.z) for m in marks], dtype=np.float32)  # (33, 3)
    points = normalised[:, :2] * np.array([width, height], dtype=np.float32)
    depth = normalised[:, 2] * np.float32(width)  # z shares x's scale
    visibility = np.clip(np.array([m.visibility for m in marks], dtype=np.float32), 0.0, 1.0)
    world = np.zeros((33, 3), dtype=np.float32)
    if result.pose_world_landmarks is not None:
        world = np.array([(m.x, m.y, m.z) for m in result.pose_world_landmarks.landmark], dtype=np.float32)
    mask = None
    if result.segmentation_mask is not None:
        mask = np.asarray(result.segmentation_mask, dtype=np.float32)
    return points, depth, visibility, world, mask


_POSE: tuple[object, threading.Lock] | None = None
_POSE_LOCK = threading.Lock()


def _pose_model() -> tuple[object, threading.Lock]:
    """The process-wide MediaPipe Pose graph (bundled full model, segmentation on), built once."""
    global _POSE
    with _POSE_LOCK:
        if _POSE is None:
            from mediapipe.python.solutions import pose as mp_pose

            model = mp_pose.Pose(
                static_image_mode=True,
                model_complexity=1,  # the bundled pose_landmark_full.tflite; 0 and 2 download
                enable_segmentation=True,
                min_detection_confidence=0.5,
            )
            _POSE = (model, threading.Lock())
        return _POSE
