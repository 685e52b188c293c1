"""Plain geometry containers passed between a method's stage 2 and the export.

Both live in the official (TRELLIS) frame: z up, the subject inside the cube
[-0.5, 0.5]^3, front facing -y.  The export rotates to glTF's y-up frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class TriangleMesh:
    vertices: np.ndarray
    """(V, 3) float32 positions."""
    faces: np.ndarray
    """(F, 3) int64 vertex indices, counter-clockwise seen from outside."""
    vertex_colors: np.ndarray | None = None
    """(V, 3) float32 in [0, 1], if the method predicts them."""


@dataclass
class Gaussians:
    """A set of 3D Gaussians with activated parameters (ready to render)."""

    xyz: np.ndarray
    """(G, 3) float32 centres."""
    scaling: np.ndarray
    """(G, 3) float32 standard deviations along the local axes."""
    rotation: np.ndarray
    """(G, 4) float32 unit quaternions, w x y z."""
    opacity: np.ndarray
    """(G, 1) float32 in [0, 1]."""
    colors: np.ndarray
    """(G, 3) float32 RGB in [0, 1] (degree-0 spherical harmonics already applied)."""
