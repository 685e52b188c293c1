"""Cameras over the official frame (z up, subject in [-0.5, 0.5]^3).

A camera maps world points to pixel coordinates in the rasteriser's
convention (x right over columns, y down over rows, pixel centres at
``+0.5``), plus a non-negative depth that grows away from the camera.

The five stage-1 views are orthographic and are described *as stored*: views
2 (back) and 3 (left) are horizontally mirrored images, so their cameras are
mirrored too (image column grows with +x for view 2 and +y for view 3) and
the stored pixels can be used without flipping.  See the specification,
section 4.1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class OrthographicCamera:
    """Parallel projection onto the plane spanned by ``right`` and ``up``.

    The image is ``size`` x ``size`` pixels and covers the square of half
    side ``half_extent`` around ``center``; depth is measured along
    ``forward`` from ``center - 2 * forward`` (so it is positive for points
    of the unit cube).
    """

    right: tuple[float, float, float]
    up: tuple[float, float, float]
    forward: tuple[float, float, float]
    size: int
    center: tuple[float, float, float] = (0.0, 0.0, 0.0)
    half_extent: float = 0.5

    def project(self, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """(N, 3) world points -> (N, 2) pixel xy, (N,) depth, no w (affine projection)."""
        axes = torch.tensor([self.right, self.up, self.forward], dtype=points.dtype, device=points.device)
        local = (points - torch.tensor(self.center, dtype=points.dtype, device=points.device)) @ axes.T  # (N, 3)
        scale = self.size / (2.0 * self.half_extent)
        x = (local[:, 0] + self.half_extent) * scale
        y = (self.half_extent - local[:, 1]) * scale
        return torch.stack([x, y], dim=1), local[:, 2] + 2.0, None


@dataclass(frozen=True)
class PerspectiveCamera:
    """Pinhole camera at ``position`` looking at the origin with +z up."""

    position: tuple[float, float, float]
    size: int
    fov_degrees: float = 40.0

    def _axes(self, device, dtype) -> torch.Tensor:
        eye = np.asarray(self.position, dtype=np.float64)
        forward = -eye / np.linalg.norm(eye)
        up = np.array([0.0, 0.0, 1.0])
        if abs(forward @ up) > 0.999:  # looking straight up or down
            up = np.array([0.0, 1.0, 0.0])
        right = np.cross(forward, up)
        right /= np.linalg.norm(right)
        true_up = np.cross(right, forward)
        return torch.tensor(np.stack([right, true_up, forward]), dtype=dtype, device=device)  # (3, 3)

    @property
    def focal(self) -> float:
        """Focal length in pixels."""
        return 0.5 * self.size / math.tan(math.radians(self.fov_degrees) / 2.0)

    def project(self, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(N, 3) world points -> (N, 2) pixel xy, (N,) depth along the view axis, (N,) w (= depth)."""
        axes = self._axes(points.device, points.dtype)
        eye = torch.tensor(self.position, dtype=points.dtype, device=points.device)
        local = (points - eye) @ axes.T  # (N, 3): right, up, forward
        z = local[:, 2].clamp(min=1e-6)
        x = self.focal * local[:, 0] / z + 0.5 * self.size
        y = -self.focal * local[:, 1] / z + 0.5 * self.size
        return torch.stack([x, y], dim=1), z, z

    def world_to_camera(self, device=None, dtype=torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
        """(3, 3) rotation (rows right, up, forward) and (3,) eye position."""
        return self._axes(device, dtype), torch.tensor(self.position, dtype=dtype, device=device)


Camera = OrthographicCamera | PerspectiveCamera

FACE_CENTER_Z = 1.0 / 3.0
FACE_HALF_EXTENT = 1.0 / 6.0
"""The face close-up (view 4) covers x in [-1/6, 1/6], z in [1/6, 1/2] seen from the front."""


def canonical_cameras(size: int) -> list[OrthographicCamera]:
    """The cameras of the five stored stage-1 views (front, right, back, left, face).

    Pixel (r, c) of view 0 sees x = (c + 0.5)/size - 0.5, z = 0.5 - (r + 0.5)/size.
    """
    return [
        OrthographicCamera(right=(1, 0, 0), up=(0, 0, 1), forward=(0, 1, 0), size=size),
        OrthographicCamera(right=(0, 1, 0), up=(0, 0, 1), forward=(-1, 0, 0), size=size),
        OrthographicCamera(right=(1, 0, 0), up=(0, 0, 1), forward=(0, -1, 0), size=size),  # mirrored
        OrthographicCamera(right=(0, 1, 0), up=(0, 0, 1), forward=(1, 0, 0), size=size),  # mirrored
        OrthographicCamera(
            right=(1, 0, 0),
            up=(0, 0, 1),
            forward=(0, 1, 0),
            size=size,
            center=(0.0, 0.0, FACE_CENTER_Z),
            half_extent=FACE_HALF_EXTENT,
        ),
    ]


def _radical_inverse_base2(index: int) -> float:
    result, fraction = 0.0, 0.5
    while index:
        if index & 1:
            result += fraction
        index >>= 1
        fraction *= 0.5
    return result


def sphere_directions(count: int) -> np.ndarray:
    """(count, 3) unit vectors spread evenly over the sphere (Hammersley points)."""
    out = np.empty((count, 3), dtype=np.float64)
    for i in range(count):
        u = (i + 0.5) / count
        v = _radical_inverse_base2(i)
        z = 1.0 - 2.0 * u  # uniform in height <=> uniform in area
        ring = math.sqrt(max(0.0, 1.0 - z * z))
        phi = 2.0 * math.pi * v
        out[i] = (ring * math.cos(phi), ring * math.sin(phi), z)
    return out


def sphere_cameras(count: int, size: int, radius: float = 2.0, fov_degrees: float = 40.0) -> list[PerspectiveCamera]:
    """``count`` perspective cameras on a sphere of ``radius`` looking at the origin."""
    return [
        PerspectiveCamera(position=tuple(float(c) for c in radius * d), size=size, fov_degrees=fov_degrees)
        for d in sphere_directions(count)
    ]
