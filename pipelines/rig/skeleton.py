"""A humanoid skeleton with Mixamo's joint names, placed inside the mesh from the photo's pose.

The skeleton has 22 deforming joints (hips, three spine joints, neck, head,
shoulders, upper and lower arms, hands, upper and lower legs, feet, toes) and
three end joints (top of the head, tips of the toes) that only mark where the
last bones end, as Mixamo's rigs do.  Names carry Mixamo's ``mixamorig:``
prefix so retargeting tools map them without a bone table.

Placement (official frame, z up, the front camera looking along +y):

1. **front view**: MediaPipe's 33 landmarks on the 768 px front view are the
   orthographic projection of the body, so pixel (u, v) is the world line
   x = u/768 - 0.5, z = 0.5 - v/768 (``canonical_cameras``' view 0).  Each
   joint is a fixed blend of landmarks (``JOINT_BLENDS``), e.g. the hips are
   the middle of both hip landmarks, the spine joints divide hips-to-shoulders
   in four;
2. **depth**: the ray along y through the joint crosses the mesh in one or
   more inside intervals (a hand in front of the belly: two).  MediaPipe's
   relative depth, anchored at the hips' own depth, picks the interval, and the
   joint goes to the centre of that cross-section.  Where the interval is much
   longer than the limb is wide (a foot or the knee of someone sitting points
   at the camera; a hand rests on the belly and the ray crosses both) the
   joint keeps MediaPipe's depth, clamped a limb's radius inside the interval;
3. **inside**: a joint still outside the mesh (a landmark off the silhouette,
   the top of the head guessed too high) slides toward its parent until it is
   inside with a margin, and a hand's tip toward the wrist; the hips, which
   have no parent, go to the nearest inside voxel.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipelines.person import pose as mp
from pipelines.rig.volume import SolidMesh

PREFIX = "mixamorig:"

JOINTS: tuple[tuple[str, str | None], ...] = (
    ("Hips", None),
    ("Spine", "Hips"),
    ("Spine1", "Spine"),
    ("Spine2", "Spine1"),
    ("Neck", "Spine2"),
    ("Head", "Neck"),
    ("HeadTop_End", "Head"),
    ("LeftShoulder", "Spine2"),
    ("LeftArm", "LeftShoulder"),
    ("LeftForeArm", "LeftArm"),
    ("LeftHand", "LeftForeArm"),
    ("RightShoulder", "Spine2"),
    ("RightArm", "RightShoulder"),
    ("RightForeArm", "RightArm"),
    ("RightHand", "RightForeArm"),
    ("LeftUpLeg", "Hips"),
    ("LeftLeg", "LeftUpLeg"),
    ("LeftFoot", "LeftLeg"),
    ("LeftToeBase", "LeftFoot"),
    ("LeftToe_End", "LeftToeBase"),
    ("RightUpLeg", "Hips"),
    ("RightLeg", "RightUpLeg"),
    ("RightFoot", "RightLeg"),
    ("RightToeBase", "RightFoot"),
    ("RightToe_End", "RightToeBase"),
)
"""(name, parent) in an order where every parent comes before its children ("Left" is the person's left)."""

END_JOINTS = frozenset({"HeadTop_End", "LeftToe_End", "RightToe_End"})
"""Joints that only mark where a bone ends; no vertex follows them."""

_SHOULDERS = {mp.LEFT_SHOULDER: 0.5, mp.RIGHT_SHOULDER: 0.5}
_HIPS = {mp.LEFT_HIP: 0.5, mp.RIGHT_HIP: 0.5}
_EARS = {mp.LEFT_EAR: 0.5, mp.RIGHT_EAR: 0.5}


def _mix(*parts: tuple[float, dict[int, float]]) -> dict[int, float]:
    out: dict[int, float] = {}
    for weight, blend in parts:
        for index, w in blend.items():
            out[index] = out.get(index, 0.0) + weight * w
    return out


def _side(side: str) -> dict[str, dict[int, float]]:
    """Blends of one side's limb joints; ``side`` is "Left" or "Right" (MediaPipe's names agree)."""
    lm = {name: getattr(mp, f"{side.upper()}_{name}") for name in (
        "SHOULDER", "ELBOW", "WRIST", "PINKY", "INDEX", "HIP", "KNEE", "ANKLE", "HEEL", "FOOT_INDEX")}
    return {
        f"{side}Shoulder": _mix((0.75, _SHOULDERS), (0.25, {lm["SHOULDER"]: 1.0})),
        f"{side}Arm": {lm["SHOULDER"]: 1.0},
        f"{side}ForeArm": {lm["ELBOW"]: 1.0},
        f"{side}Hand": {lm["WRIST"]: 1.0},
        f"{side}UpLeg": {lm["HIP"]: 1.0},
        f"{side}Leg": {lm["KNEE"]: 1.0},
        f"{side}Foot": {lm["ANKLE"]: 1.0},
        f"{side}ToeBase": {lm["HEEL"]: 0.3, lm["FOOT_INDEX"]: 0.7},
        f"{side}Toe_End": {lm["FOOT_INDEX"]: 1.0},
    }


JOINT_BLENDS: dict[str, dict[int, float]] = {
    "Hips": _HIPS,
    "Spine": _mix((0.75, _HIPS), (0.25, _SHOULDERS)),
    "Spine1": _mix((0.5, _HIPS), (0.5, _SHOULDERS)),
    "Spine2": _mix((0.25, _HIPS), (0.75, _SHOULDERS)),
    "Neck": _mix((0.9, _SHOULDERS), (0.1, _EARS)),
    "Head": _mix((0.45, _SHOULDERS), (0.55, _EARS)),
    "HeadTop_End": _mix((-0.65, _SHOULDERS), (1.65, _EARS)),
    **_side("Left"),
    **_side("Right"),
}
"""Each joint as a weighted sum of MediaPipe landmarks (weights sum to 1; a negative one extrapolates)."""

HAND_TIPS = {
    "LeftHand": {mp.LEFT_WRIST: -0.5, mp.LEFT_PINKY: 0.75, mp.LEFT_INDEX: 0.75},
    "RightHand": {mp.RIGHT_WRIST: -0.5, mp.RIGHT_PINKY: 0.75, mp.RIGHT_INDEX: 0.75},
}
"""Where each hand's bone ends (past the knuckles, over the fingers); hands have no child joint."""

INSIDE_MARGIN = 0.006
"""How far (world units, about 1 cm on a person) a joint moved back inside the mesh goes past the surface."""
LONG_SECTION = 2.5
"""An interval longer than this many limb widths holds more than the limb (see ``_depth_in_section``)."""
LIMB_RADII = {
    "Arm": 0.03, "ForeArm": 0.025, "Hand": 0.02,
    "UpLeg": 0.05, "Leg": 0.04, "Foot": 0.025, "ToeBase": 0.015, "Toe_End": 0.015,
}  # fmt: skip
"""Largest radius of a limb at each joint (name without its side), as a fraction of the body's height."""


@dataclass(frozen=True)
class Skeleton:
    names: tuple[str, ...]
    """Joint names without the Mixamo prefix, parents before children."""
    parents: np.ndarray
    """(J,) int64 index of each joint's parent, -1 for the hips."""
    positions: np.ndarray
    """(J, 3) float64 rest positions (the photo's pose), official frame."""
    tips: dict[str, np.ndarray]
    """End points (3,) of the bones of deforming joints without children (the hands)."""

    def index(self, name: str) -> int:
        return self.names.index(name)

    def children(self, joint: int) -> list[int]:
        return [int(c) for c in np.flatnonzero(self.parents == joint)]

    def bones(self) -> tuple[np.ndarray, np.ndarray]:
        """(S, 2, 3) segments and (S,) owning joint: what each deforming joint moves.

        A joint owns the segments to each of its children, or to its tip; end
        joints own none.
        """
        segments, owners = [], []
        for joint, name in enumerate(self.names):
            if name in END_JOINTS:
                continue
            ends = [self.positions[c] for c in self.children(joint)] or [self.tips[name]]
            for end in ends:
                segments.append((self.positions[joint], end))
                owners.append(joint)
        return np.asarray(segments, dtype=np.float64), np.asarray(owners, dtype=np.int64)


def landmarks_to_world(pose: mp.BodyPose, image_size: int) -> np.ndarray:
    """(33, 3) landmarks as official-frame (x, depth offset, z): x and z exact, y relative to the hips.

    The front view is orthographic over the unit cube: one pixel is 1/size in
    x and z, and MediaPipe's depth shares the x scale.
    """
    u, v = pose.landmarks[:, 0].astype(np.float64), pose.landmarks[:, 1].astype(np.float64)
    depth = pose.depth.astype(np.float64) - float(np.mean(pose.depth[[mp.LEFT_HIP, mp.RIGHT_HIP]]))
    return np.stack([u / image_size - 0.5, depth / image_size, 0.5 - v / image_size], axis=1)


def _blend(points: np.ndarray, blend: dict[int, float]) -> np.ndarray:
    return sum(weight * points[index] for index, weight in blend.items())


def place_skeleton(pose: mp.BodyPose, solid: SolidMesh, image_size: int) -> Skeleton:
    """The skeleton of ``pose`` (found on the square front view of ``image_size`` px) inside ``solid``."""
    # 1. front view: every joint a blend of landmarks, as (x, depth relative to the hips, z).
    landmarks = landmarks_to_world(pose, image_size)  # (33, 3)
    names = tuple(name for name, _ in JOINTS)
    parents = np.array([names.index(parent) if parent else -1 for _, parent in JOINTS], dtype=np.int64)
    guesses = np.stack([_blend(landmarks, JOINT_BLENDS[name]) for name in names])  # (J, 3)
    tips = {name: _blend(landmarks, blend) for name, blend in HAND_TIPS.items()}

    # 2. depth: the hips' cross-section anchors MediaPipe's relative depths.
    sections = solid.intervals(guesses[:, [0, 2]])
    radii = solid.half_width(guesses[:, [0, 2]])  # (J,) seen from the front; a fused limb's is the body's
    height = float(solid.upper[2] - solid.lower[2])
    for joint, name in enumerate(names):
        limb = LIMB_RADII.get(name.removeprefix("Left").removeprefix("Right"))
        if limb is not None:
            radii[joint] = min(radii[joint], limb * height)
    hips_section = sections[0]
    hips_y = float(hips_section[np.argmax(hips_section[:, 1] - hips_section[:, 0])].mean()) if len(hips_section) else 0.0
    positions = guesses.copy()
    for joint in range(len(names)):
        positions[joint, 1] = _depth_in_section(sections[joint], hips_y + guesses[joint, 1], radii[joint])
    for name, tip in tips.items():  # a hand's tip keeps its depth relative to the wrist
        hand = names.index(name)
        tips[name] = tip + np.array([0.0, positions[hand, 1] - guesses[hand, 1], 0.0])

    # 3. inside, parents first.
    for joint in range(len(names)):
        if solid.contains(positions[joint])[0]:
            continue
        if parents[joint] < 0:
            positions[joint] = _nearest_inside(solid, positions[joint])
        else:
            positions[joint] = _slide_inside(solid, positions[joint], positions[parents[joint]])
    for name in tips:
        if not solid.contains(tips[name])[0]:
            tips[name] = _slide_inside(solid, tips[name], positions[names.index(name)])
    return Skeleton(names=names, parents=parents, positions=positions, tips=tips)


def _depth_in_section(section: np.ndarray, wanted: float, radius: float) -> float:
    """Depth of a joint on its ray, from the inside intervals ``section`` (K, 2) it crosses.

    The interval nearest MediaPipe's depth ``wanted`` is the limb's.  Its centre
    is the joint's depth, unless the interval is much longer than the limb is
    wide: then the ray runs along the limb (a foot pointing at the camera) or
    through the limb and the body behind it at once (a hand resting on a
    belly), and the joint keeps MediaPipe's depth, at least ``radius`` inside.
    """
    if len(section) == 0:
        return wanted
    distance = np.maximum(section[:, 0] - wanted, 0) + np.maximum(wanted - section[:, 1], 0)
    entry, exit_ = section[int(np.argmin(distance))]
    if exit_ - entry > LONG_SECTION * 2 * radius > 0:
        return float(np.clip(wanted, entry + radius, exit_ - radius))
    return float(0.5 * (entry + exit_))


def _slide_inside(solid: SolidMesh, point: np.ndarray, anchor: np.ndarray, samples: int = 64) -> np.ndarray:
    """The point of the segment ``point`` -> ``anchor`` (inside) nearest ``point`` that is inside, plus a margin."""
    t = np.linspace(0.0, 1.0, samples + 1)[:, None]
    candidates = point + t * (anchor - point)  # (samples + 1, 3)
    inside = solid.contains(candidates)
    inside[-1] = True
    first = int(np.argmax(inside))
    length = float(np.linalg.norm(anchor - point))
    step = min(1.0, t[first, 0] + INSIDE_MARGIN / max(length, 1e-9))
    moved = point + step * (anchor - point)
    return moved if solid.contains(moved)[0] else candidates[first]


def _nearest_inside(solid: SolidMesh, point: np.ndarray) -> np.ndarray:
    grid = solid.occupancy()
    cells = np.argwhere(grid.inside)
    if len(cells) == 0:
        raise ValueError("the mesh encloses no volume")
    centres = grid.lower + (cells + 0.5) * grid.size
    return centres[int(np.argmin(np.linalg.norm(centres - point, axis=1)))]
