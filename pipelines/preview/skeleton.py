"""The person's skeleton in the official frame, from the body pose seen on the stage-1 canvas.

:func:`pipelines.person.estimate_pose` gives 33 landmarks in canvas pixels and
MediaPipe's world landmarks in metres.  The canvas fixes each joint's x and z
(x = (col + 0.5)/S - 0.5, z = 0.5 - (row + 0.5)/S); the world landmarks give
its depth.  Their z is scaled to canvas units by the ratio of the bones'
lengths in the canvas to their lengths in the world's image plane, and
measured from the torso's centre, so that y = 0 is the torso's mid-plane and
a joint nearer the camera has a smaller (more negative) y, as the front of
the official frame faces -y.

Depth from a single photo is uncertain (and monocular pose models exaggerate
leans), so each joint's depth is taken relative to its parent joint, shrunk
towards the parent by ``depth_gain`` and by the landmark's visibility, and
never more than the bone's own length allows.

The skeleton holds what ``inflation.py`` needs to give every part of the body
its own depth and thickness: the torso as a quadrilateral with a depth plane,
and the limbs, neck and head as capsules (a segment with a radius) whose depth
runs linearly from one joint to the other.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from pipelines.person import BodyPose
from pipelines.person import pose as mp

# Limbs as (name, parent joint, child joint, radius cap as a fraction of the torso width).
LIMBS: tuple[tuple[str, int, int, float], ...] = (
    ("left_upper_arm", mp.LEFT_SHOULDER, mp.LEFT_ELBOW, 0.20),
    ("right_upper_arm", mp.RIGHT_SHOULDER, mp.RIGHT_ELBOW, 0.20),
    ("left_forearm", mp.LEFT_ELBOW, mp.LEFT_WRIST, 0.16),
    ("right_forearm", mp.RIGHT_ELBOW, mp.RIGHT_WRIST, 0.16),
    ("left_thigh", mp.LEFT_HIP, mp.LEFT_KNEE, 0.30),
    ("right_thigh", mp.RIGHT_HIP, mp.RIGHT_KNEE, 0.30),
    ("left_shin", mp.LEFT_KNEE, mp.LEFT_ANKLE, 0.20),
    ("right_shin", mp.RIGHT_KNEE, mp.RIGHT_ANKLE, 0.20),
)
# Hands and feet as (the limb's end joint, the landmarks of the hand or foot beyond it).
HANDS = (
    (mp.LEFT_WRIST, (mp.LEFT_PINKY, mp.LEFT_INDEX, mp.LEFT_THUMB)),
    (mp.RIGHT_WRIST, (mp.RIGHT_PINKY, mp.RIGHT_INDEX, mp.RIGHT_THUMB)),
)
FEET = (
    (mp.LEFT_ANKLE, (mp.LEFT_HEEL, mp.LEFT_FOOT_INDEX)),
    (mp.RIGHT_ANKLE, (mp.RIGHT_HEEL, mp.RIGHT_FOOT_INDEX)),
)
FACE = (mp.NOSE, mp.LEFT_EYE, mp.RIGHT_EYE, mp.MOUTH_LEFT, mp.MOUTH_RIGHT)
TORSO = (mp.LEFT_SHOULDER, mp.RIGHT_SHOULDER, mp.LEFT_HIP, mp.RIGHT_HIP)


@dataclass(frozen=True)
class SkeletonConfig:
    torso_depth_ratio: float = 0.6
    """Front-to-back depth of the torso as a fraction of its width (people measure 0.5-0.7)."""
    torso_width_ratio: float = 1.2
    """Torso width over the distance between the shoulder joints."""
    min_visibility: float = 0.5
    """Shoulders and hips below this visibility: no skeleton (the body is inflated without one)."""
    depth_trust: tuple[float, float] = (0.4, 0.9)
    """Visibility at which a joint's depth is not trusted at all, and fully trusted."""
    depth_gain: float = 0.6
    """Depth offsets of joints from their parents are shrunk by this factor: a single
    photo's depth is uncertain, and monocular pose models exaggerate leans."""
    max_depth: float = 0.38
    """Largest |y| of a joint in world units (the body must stay inside the unit cube)."""


@dataclass(frozen=True)
class Capsule:
    """A limb: the segment from ``start`` to ``end`` (x, y, z world) thickened by ``radius``."""

    name: str
    start: np.ndarray
    """(3,) float32 x, y, z of the parent joint."""
    end: np.ndarray
    """(3,) float32 x, y, z of the child joint (or the hand's, foot's, head's end)."""
    radius: float
    """World units: the limb's half-width in the photo (capped by anatomy)."""


@dataclass(frozen=True)
class Skeleton:
    """Joints, torso and limbs of the person in the official frame (world units)."""

    joints: np.ndarray
    """(33, 3) float32 x, y, z of MediaPipe's landmarks; y is depth, torso mid-plane at 0."""
    visibility: np.ndarray
    """(33,) float32 in [0, 1]."""
    torso: np.ndarray
    """(4, 2) float32 x, z corners: left shoulder, right shoulder, right hip, left hip, widened
    to the torso's outline."""
    torso_half_depth: float
    """Half the torso's front-to-back depth, world units."""
    limbs: tuple[Capsule, ...]
    """Arms (to the hands), legs (to the feet), neck and head."""

    def torso_depth_at(self, x: np.ndarray, z: np.ndarray) -> np.ndarray:
        """Depth y of the torso's mid-plane at world (x, z): bilinear between the shoulders'
        and the hips' depths, along the spine and across the shoulders."""
        ls, rs, lh, rh = (self.joints[i] for i in TORSO)
        top, bottom = (ls + rs) / 2, (lh + rh) / 2
        spine = bottom[[0, 2]] - top[[0, 2]]  # (2,) x, z
        rel = np.stack([x - top[0], z - top[2]], axis=-1)  # (..., 2)
        v = np.clip(rel @ spine / max(float(spine @ spine), 1e-9), 0.0, 1.0)  # 0 shoulders, 1 hips
        across = np.stack([x, z], axis=-1) - (top[[0, 2]] + v[..., None] * spine)  # (..., 2)
        half_top = (ls - rs)[[0, 2]] / 2
        half_bottom = (lh - rh)[[0, 2]] / 2
        half = (1 - v)[..., None] * half_top + v[..., None] * half_bottom  # (..., 2) centre -> left
        u = np.clip((across * half).sum(-1) / np.maximum((half * half).sum(-1), 1e-9), -1.0, 1.0)
        y_top = top[1] + u * (ls[1] - rs[1]) / 2
        y_bottom = bottom[1] + u * (lh[1] - rh[1]) / 2
        return ((1 - v) * y_top + v * y_bottom).astype(np.float32)


def skeleton_from_pose(
    pose: BodyPose, mask: np.ndarray, config: SkeletonConfig = SkeletonConfig()
) -> Skeleton | None:
    """The skeleton of the pose found on the (S, S) canvas.

    ``mask`` is the (S, S) bool silhouette (it sizes the limbs).  Returns None when
    the torso's landmarks are not visible enough to anchor a skeleton.
    """
    size = mask.shape[0]
    vis = np.asarray(pose.visibility, dtype=np.float32)
    if (vis[list(TORSO)] < config.min_visibility).any():
        return None
    px = np.asarray(pose.landmarks, dtype=np.float32)  # (33, 2) col, row
    world = np.asarray(pose.world, dtype=np.float32)  # (33, 3) metres, y down, z away
    scale = _pixels_per_metre(px, world)
    if scale is None:
        return None
    joints = np.empty((33, 3), dtype=np.float32)
    joints[:, 0] = (px[:, 0] + 0.5) / size - 0.5
    joints[:, 2] = 0.5 - (px[:, 1] + 0.5) / size
    joints[:, 1] = _trusted_depths(world, vis, scale / size, config)

    shoulder_width = float(np.linalg.norm(world[mp.LEFT_SHOULDER] - world[mp.RIGHT_SHOULDER])) * scale / size
    torso_width = config.torso_width_ratio * shoulder_width
    torso = _torso_outline(joints, torso_width)

    inside = ndimage.distance_transform_edt(mask) / size  # world units to the outline
    limbs = []
    for name, parent, child, cap in LIMBS:
        start, end = joints[parent].copy(), joints[child].copy()
        end = _extend(end, joints, child)
        radius = _limb_radius(inside, start, end, size)
        limbs.append(Capsule(name, start, end, float(np.clip(radius, 0.05 * torso_width, cap * torso_width))))
    ears = float(np.linalg.norm(world[mp.LEFT_EAR] - world[mp.RIGHT_EAR])) * scale / size
    limbs.extend(_neck_and_head(joints, torso_width, ears))
    return Skeleton(
        joints=joints,
        visibility=vis,
        torso=torso,
        torso_half_depth=0.5 * config.torso_depth_ratio * torso_width,
        limbs=tuple(limbs),
    )


# --- internals -------------------------------------------------------------------------

_BONES = (
    (mp.LEFT_SHOULDER, mp.RIGHT_SHOULDER),
    (mp.LEFT_HIP, mp.RIGHT_HIP),
    (mp.LEFT_SHOULDER, mp.LEFT_HIP),
    (mp.RIGHT_SHOULDER, mp.RIGHT_HIP),
) + tuple((parent, child) for _, parent, child, _ in LIMBS)


def _pixels_per_metre(px: np.ndarray, world: np.ndarray) -> float | None:
    """Canvas pixels per metre: median ratio of bone lengths in the canvas and in the world's
    image plane (x, y), over bones not seen end-on."""
    ratios = []
    for a, b in _BONES:
        metres = float(np.linalg.norm(world[a, :2] - world[b, :2]))
        if metres > 0.05:
            ratios.append(float(np.linalg.norm(px[a] - px[b])) / metres)
    return float(np.median(ratios)) if ratios else None


def _trusted_depths(
    world: np.ndarray, vis: np.ndarray, units_per_metre: float, config: SkeletonConfig
) -> np.ndarray:
    """(33,) depth y of every joint in world units, torso mid-plane at 0.

    Torso joints keep their depths; a limb joint's offset from its parent is
    scaled by how visible it is (hidden joints follow their parent) and capped
    by the bone's 3D length.  Joints outside the limb chains (face, hands, feet)
    follow their nearest chain joint by the same rule.
    """
    z = world[:, 2] * units_per_metre  # (33,) world units, larger = farther
    torso = list(TORSO)
    z = z - z[torso].mean()
    z[torso] *= config.depth_gain  # the torso's lean and twist
    low, high = config.depth_trust
    trust = np.clip((vis - low) / (high - low), 0.0, 1.0) * config.depth_gain
    depth = z.copy()
    for _, parent, child, _ in LIMBS:  # parents come before children in LIMBS
        length = float(np.linalg.norm(world[child] - world[parent])) * units_per_metre
        offset = float(np.clip(z[child] - z[parent], -length, length)) * trust[child]
        depth[child] = depth[parent] + offset
    for root, ends in HANDS + FEET:
        for end in ends:
            depth[end] = depth[root] + (z[end] - z[root]) * trust[end]
    head = list(FACE) + [mp.LEFT_EAR, mp.RIGHT_EAR]
    shoulders = depth[[mp.LEFT_SHOULDER, mp.RIGHT_SHOULDER]].mean()
    depth[head] = shoulders + (z[head] - z[[mp.LEFT_SHOULDER, mp.RIGHT_SHOULDER]].mean()) * trust[head]
    return np.clip(depth, -config.max_depth, config.max_depth).astype(np.float32)


def _torso_outline(joints: np.ndarray, width: float) -> np.ndarray:
    """(4, 2) x, z corners of the torso: the shoulder and hip lines widened to ``width``
    (hips to 0.9 of it) about their midpoints."""
    corners = []
    for left, right, fraction in ((mp.LEFT_SHOULDER, mp.RIGHT_SHOULDER, 1.0), (mp.LEFT_HIP, mp.RIGHT_HIP, 0.9)):
        a, b = joints[left][[0, 2]], joints[right][[0, 2]]
        mid, direction = (a + b) / 2, a - b
        direction = direction / max(float(np.linalg.norm(direction)), 1e-6)
        half = 0.5 * fraction * width
        corners.append((mid + half * direction, mid - half * direction))
    (ls, rs), (lh, rh) = corners
    return np.stack([ls, rs, rh, lh]).astype(np.float32)


def _extend(end: np.ndarray, joints: np.ndarray, child: int) -> np.ndarray:
    """A wrist or ankle moved to the middle of its hand or foot, so the limb reaches it."""
    for root, ends in HANDS + FEET:
        if root == child:
            return joints[[root, *ends]].mean(axis=0)
    return end


def _limb_radius(inside: np.ndarray, start: np.ndarray, end: np.ndarray, size: int) -> float:
    """Median distance to the outline along the middle of the limb, in world units."""
    t = np.linspace(0.25, 0.75, 9)[:, None]
    points = start[[0, 2]] * (1 - t) + end[[0, 2]] * t  # (9, 2) x, z
    cols = np.clip(((points[:, 0] + 0.5) * size).astype(int), 0, size - 1)
    rows = np.clip(((0.5 - points[:, 1]) * size).astype(int), 0, size - 1)
    return float(np.median(inside[rows, cols]))


def _neck_and_head(joints: np.ndarray, torso_width: float, ear_distance: float) -> list[Capsule]:
    """A capsule from the shoulders' midpoint to the head's centre (between the ears, which
    sit about on the skull's mid-plane), and the head around that centre (its radius a little
    over half the distance between the ears)."""
    neck = (joints[mp.LEFT_SHOULDER] + joints[mp.RIGHT_SHOULDER]) / 2
    head = (joints[mp.LEFT_EAR] + joints[mp.RIGHT_EAR]) / 2
    return [
        Capsule("neck", neck.astype(np.float32), head.astype(np.float32), 0.15 * torso_width),
        Capsule("head", head.astype(np.float32), head.astype(np.float32),
                float(np.clip(0.65 * ear_distance, 0.15 * torso_width, 0.35 * torso_width))),
    ]
