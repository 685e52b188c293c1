"""A person-shaped 64^3 occupancy (solid body of capsules and spheres) for GPU timing.

Stage 1 predicts solid occupancy of the body inside the unit cube; this builds a
comparable one (standing figure, arms slightly out) with 20-40 k cells.
"""

from __future__ import annotations

import numpy as np

# (start, end, radius) in voxel units of a 64^3 grid, z up, figure facing -y
CAPSULES = (
    ((32, 32, 34), (32, 32, 46), 7.0),  # torso
    ((32, 32, 52), (32, 32, 55), 5.5),  # head
    ((32, 32, 46), (32, 32, 49), 2.5),  # neck
    ((26, 32, 46), (17, 32, 31), 2.6),  # left arm
    ((38, 32, 46), (47, 32, 31), 2.6),  # right arm
    ((28.5, 32, 33), (27, 32, 4), 3.4),  # left leg
    ((35.5, 32, 33), (37, 32, 4), 3.4),  # right leg
)


def person_coords(scale: float = 1.15, thickness: float = 1.7) -> np.ndarray:
    """(N, 4) int32 rows [0, x, y, z] of the cells inside the figure (limbs widened by ``thickness``)."""
    grid = np.stack(np.meshgrid(*(np.arange(64),) * 3, indexing="ij"), axis=-1).reshape(-1, 3).astype(np.float32) + 0.5
    inside = np.zeros(grid.shape[0], dtype=bool)
    centre = np.array([32.0, 32.0, 32.0])
    for start, end, radius in CAPSULES:
        a = (np.array(start) - centre) * scale + centre
        b = (np.array(end) - centre) * scale + centre
        ab = b - a
        t = np.clip(((grid - a) @ ab) / max(float(ab @ ab), 1e-6), 0, 1)
        dist = np.linalg.norm(grid - (a + t[:, None] * ab), axis=1)
        inside |= dist <= radius * scale * thickness
    xyz = np.argwhere(inside.reshape(64, 64, 64)).astype(np.int32)
    return np.concatenate([np.zeros((xyz.shape[0], 1), np.int32), xyz], axis=1)


if __name__ == "__main__":
    print(person_coords().shape[0], "cells")
