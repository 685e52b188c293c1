"""The animation clip shipped with a rigged model: a few seconds of waving, keyframed here.

The rest pose is the photo's pose, so the clip is written as *targets* in
the world (glTF's y-up frame, the person facing +z, their right along -x)
and turned into each joint's local rotation from its rest direction: the
right upper arm swings out and up, the forearm stands up and waves about the
viewing axis, the chest sways and the head tilts along.  Rest rotations are
all identity (joints are placed by translation only), so a joint's local
rotation is its parent-relative turn of the rest pose.

Rotations are glTF quaternions (x, y, z, w), interpolated linearly
(spherical between keyframes); the clip starts and ends at the rest pose and
loops.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial.transform import Rotation

CLIP_NAME = "wave"
RAISE_S = 0.6
"""Time to lift the arm (and to lower it at the end)."""
WAVES = 4
WAVE_PERIOD_S = 0.5
WAVE_DEGREES = 22.0
UPPER_ARM_TARGET = (-0.8, 0.55, 0.25)
"""Direction of the raised right upper arm: out to the person's right, up, a little forward."""
FOREARM_TARGET = (-0.15, 1.0, 0.2)
"""Direction of the raised forearm: nearly straight up."""
SWAY_DEGREES = 3.0
HEAD_TILT_DEGREES = 6.0


@dataclass
class Track:
    joint: int
    """Index of the animated joint in the skeleton."""
    times: np.ndarray
    """(K,) float32 seconds, ascending."""
    rotations: np.ndarray
    """(K, 4) float32 unit quaternions (x, y, z, w), local to the joint's parent."""


@dataclass
class Clip:
    name: str
    tracks: list[Track]

    @property
    def duration(self) -> float:
        return max(float(track.times[-1]) for track in self.tracks)


def _unit(vector) -> np.ndarray:
    vector = np.asarray(vector, dtype=np.float64)
    return vector / max(float(np.linalg.norm(vector)), 1e-12)


def _turn(source: np.ndarray, target: np.ndarray) -> Rotation:
    """The shortest rotation taking direction ``source`` to ``target``."""
    source, target = _unit(source), _unit(target)
    axis = np.cross(source, target)
    sine, cosine = float(np.linalg.norm(axis)), float(source @ target)
    if sine < 1e-9:  # parallel, or opposite: turn about any perpendicular axis
        if cosine > 0:
            return Rotation.identity()
        perpendicular = np.cross(source, [1.0, 0.0, 0.0] if abs(source[0]) < 0.9 else [0.0, 1.0, 0.0])
        return Rotation.from_rotvec(np.pi * _unit(perpendicular))
    return Rotation.from_rotvec(axis / sine * np.arctan2(sine, cosine))


def _track(joint: int, keys: list[tuple[float, Rotation]]) -> Track:
    times = np.array([t for t, _ in keys], dtype=np.float32)
    quats = np.stack([r.as_quat() for _, r in keys]).astype(np.float32)
    for k in range(1, len(quats)):  # keep consecutive keys in the same hemisphere (shortest path)
        if float(quats[k] @ quats[k - 1]) < 0:
            quats[k] = -quats[k]
    return Track(joint=joint, times=times, rotations=quats)


def wave_clip(names: tuple[str, ...], positions: np.ndarray) -> Clip:
    """The waving clip for a skeleton with Mixamo ``names`` at rest ``positions`` (J, 3), y-up."""
    index = {name: i for i, name in enumerate(names)}
    shoulder, elbow, wrist = (positions[index[n]] for n in ("RightArm", "RightForeArm", "RightHand"))
    identity = Rotation.identity()
    end = 2 * RAISE_S + WAVES * WAVE_PERIOD_S

    arm = _turn(elbow - shoulder, UPPER_ARM_TARGET)  # world turn of the upper arm
    forearm_world = _turn(arm.apply(wrist - elbow), FOREARM_TARGET)

    def forearm(angle_degrees: float) -> Rotation:
        swing = Rotation.from_rotvec(np.radians(angle_degrees) * np.array([0.0, 0.0, 1.0]))  # about the view axis
        return arm.inv() * swing * forearm_world * arm  # local: under the turned upper arm

    wave_keys = [(0.0, identity), (RAISE_S, forearm(0.0))]
    for k in range(WAVES):
        start = RAISE_S + k * WAVE_PERIOD_S
        wave_keys += [(start + 0.25 * WAVE_PERIOD_S, forearm(WAVE_DEGREES)),
                      (start + 0.75 * WAVE_PERIOD_S, forearm(-WAVE_DEGREES))]
    wave_keys += [(end - RAISE_S, forearm(0.0)), (end, identity)]

    def about(axis, degrees: float) -> Rotation:
        return Rotation.from_rotvec(np.radians(degrees) * np.asarray(axis, dtype=np.float64))

    sway = [(t, about((0, 1, 0), SWAY_DEGREES * np.sin(2 * np.pi * t / end))) for t in np.linspace(0, end, 9)]
    tilt = [(t, about((0, 0, 1), -HEAD_TILT_DEGREES * np.sin(np.pi * t / end) ** 2)) for t in np.linspace(0, end, 9)]
    return Clip(
        name=CLIP_NAME,
        tracks=[
            _track(index["RightArm"], [(0.0, identity), (RAISE_S, arm), (end - RAISE_S, arm), (end, identity)]),
            _track(index["RightForeArm"], wave_keys),
            _track(index["Spine1"], sway),
            _track(index["Head"], tilt),
        ],
    )
