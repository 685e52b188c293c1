"""A posed body on a drawn person whose pose is known: the depth each part gets.

The person faces the camera and reaches towards it with the left arm (the
arm, seen from the front, goes out to the side; its world landmarks say the
wrist is 35 cm nearer the camera than the shoulders).  No pose model runs
here: the :class:`BodyPose` is written down, so these tests hold without
MediaPipe.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import trimesh

from pipelines.person import BodyPose
from pipelines.person import pose as mp
from pipelines.preview.inflation import body_mesh, body_shape
from pipelines.preview.skeleton import skeleton_from_pose

SIZE = 768
PX_PER_METRE = 400.0

JOINTS_PX = {
    mp.NOSE: (384, 120), mp.LEFT_EYE: (396, 108), mp.RIGHT_EYE: (372, 108),
    mp.LEFT_EYE_INNER: (390, 108), mp.RIGHT_EYE_INNER: (378, 108),
    mp.LEFT_EYE_OUTER: (402, 108), mp.RIGHT_EYE_OUTER: (366, 108),
    mp.LEFT_EAR: (414, 114), mp.RIGHT_EAR: (354, 114), mp.MOUTH_LEFT: (394, 138), mp.MOUTH_RIGHT: (374, 138),
    mp.LEFT_SHOULDER: (454, 200), mp.RIGHT_SHOULDER: (314, 200),
    mp.LEFT_ELBOW: (560, 230), mp.RIGHT_ELBOW: (280, 300),
    mp.LEFT_WRIST: (650, 250), mp.RIGHT_WRIST: (270, 390),
    mp.LEFT_PINKY: (670, 258), mp.RIGHT_PINKY: (266, 412), mp.LEFT_INDEX: (672, 250),
    mp.RIGHT_INDEX: (272, 414), mp.LEFT_THUMB: (664, 244), mp.RIGHT_THUMB: (280, 408),
    mp.LEFT_HIP: (424, 400), mp.RIGHT_HIP: (344, 400),
    mp.LEFT_KNEE: (428, 550), mp.RIGHT_KNEE: (340, 550),
    mp.LEFT_ANKLE: (430, 700), mp.RIGHT_ANKLE: (338, 700),
    mp.LEFT_HEEL: (428, 712), mp.RIGHT_HEEL: (340, 712),
    mp.LEFT_FOOT_INDEX: (440, 720), mp.RIGHT_FOOT_INDEX: (328, 720),
}
NEARER_M = {mp.LEFT_ELBOW: -0.15, mp.LEFT_WRIST: -0.35, mp.LEFT_PINKY: -0.38, mp.LEFT_INDEX: -0.38,
            mp.LEFT_THUMB: -0.37}


def _reaching_person() -> tuple[np.ndarray, BodyPose]:
    """(768, 768) uint8 silhouette and the pose of a person reaching towards the camera."""
    px = np.array([JOINTS_PX[i] for i in range(33)], dtype=np.float32)  # (33, 2)
    world = np.zeros((33, 3), dtype=np.float32)
    world[:, :2] = (px - [384, 400]) / PX_PER_METRE
    for joint, z in NEARER_M.items():
        world[joint, 2] = z
    alpha = np.zeros((SIZE, SIZE), np.uint8)
    cv2.circle(alpha, (384, 118), 44, 255, -1)  # head
    cv2.fillPoly(alpha, [np.array([[470, 190], [298, 190], [330, 420], [438, 420]], np.int32)], 255)  # torso
    point = lambda j: tuple(int(v) for v in px[j])  # noqa: E731
    for a, b, width in ((mp.LEFT_SHOULDER, mp.LEFT_ELBOW, 44), (mp.LEFT_ELBOW, mp.LEFT_INDEX, 36),
                        (mp.RIGHT_SHOULDER, mp.RIGHT_ELBOW, 44), (mp.RIGHT_ELBOW, mp.RIGHT_INDEX, 36),
                        (mp.LEFT_HIP, mp.LEFT_ANKLE, 64), (mp.RIGHT_HIP, mp.RIGHT_ANKLE, 64)):
        cv2.line(alpha, point(a), point(b), 255, width)
    pose = BodyPose(
        landmarks=px, depth=world[:, 2] * PX_PER_METRE, visibility=np.full(33, 0.99, np.float32),
        world=world, mask=None,
    )
    return alpha, pose


def _mid_and_depth(shape, x: float, z: float) -> tuple[float, float]:
    front, back, signed = shape.sample(np.float32(x), np.float32(z))
    assert signed > 0
    return float(front + back) / 2, float(back - front)


def _world(col: float, row: float) -> tuple[float, float]:
    return (col + 0.5) / SIZE - 0.5, 0.5 - (row + 0.5) / SIZE


def test_skeleton_puts_the_reaching_arm_in_front():
    alpha, pose = _reaching_person()
    skeleton = skeleton_from_pose(pose, alpha > 0)
    joints = skeleton.joints
    assert abs(joints[mp.LEFT_SHOULDER, 1] - joints[mp.RIGHT_SHOULDER, 1]) < 1e-3
    assert joints[mp.LEFT_WRIST, 1] < joints[mp.LEFT_SHOULDER, 1] - 0.1
    assert joints[mp.RIGHT_WRIST, 1] == pytest.approx(joints[mp.RIGHT_SHOULDER, 1], abs=1e-3)
    # x and z come from the canvas.
    assert joints[mp.LEFT_WRIST, 0] == pytest.approx(_world(650, 250)[0], abs=1e-6)
    assert joints[mp.LEFT_WRIST, 2] == pytest.approx(_world(650, 250)[1], abs=1e-6)


def test_posed_body_has_torso_depth_and_the_arm_stands_out():
    alpha, pose = _reaching_person()
    skeleton = skeleton_from_pose(pose, alpha > 0)
    shape = body_shape(alpha, skeleton=skeleton)
    torso_mid, torso_depth = _mid_and_depth(shape, *_world(384, 300))
    torso_width = np.count_nonzero(alpha[300]) / SIZE
    assert 0.4 <= torso_depth / torso_width <= 0.8
    hand_mid, _ = _mid_and_depth(shape, *_world(640, 248))
    assert torso_mid - hand_mid >= 0.25 * torso_depth  # the hand is in front of the torso
    other_mid, _ = _mid_and_depth(shape, *_world(272, 380))
    assert abs(other_mid - torso_mid) < 0.1 * torso_depth  # the hanging hand is not
    mesh, _ = body_mesh(shape)
    body = trimesh.Trimesh(mesh.vertices, mesh.faces, process=False)
    assert body.is_watertight and len(body.split(only_watertight=False)) == 1
    assert np.abs(mesh.vertices).max() <= 0.5


def test_without_a_pose_the_arm_stays_in_the_body_plane():
    alpha, _ = _reaching_person()
    shape = body_shape(alpha)
    torso_mid, _ = _mid_and_depth(shape, *_world(384, 300))
    hand_mid, _ = _mid_and_depth(shape, *_world(640, 248))
    assert abs(hand_mid - torso_mid) < 1e-3


def test_hidden_torso_gives_no_skeleton():
    alpha, pose = _reaching_person()
    visibility = pose.visibility.copy()
    visibility[mp.LEFT_HIP] = 0.1
    hidden = BodyPose(pose.landmarks, pose.depth, visibility, pose.world, None)
    assert skeleton_from_pose(hidden, alpha > 0) is None
