"""Checks of the outputs with readers of their own, shared by the unit and the service tests.

* ``reference_silhouette``: the pixels a GLB covers from an orbit view.  The
  GLB is read with trimesh, its vertices projected with the view's camera
  matrices in numpy, and the triangles filled by the export's PyTorch
  rasteriser (``pipelines.export.raster``): none of the OpenGL path is shared.
* ``arkit_problems``: USD's own ARKit compliance checker.
* ``decode_mp4``: every frame of a video, decoded by FFmpeg (PyAV).
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import torch
import trimesh

from pipelines.export.raster import rasterize
from pipelines.outputs.model import load_glb
from pipelines.outputs.render import Framing, OrbitView


def reference_silhouette(glb: bytes, view: OrbitView, size: int) -> np.ndarray:
    """(size, size) bool: the pixels the model covers, row 0 at the top."""
    scene = trimesh.load(io.BytesIO(glb), file_type="glb", force="scene")
    [mesh] = scene.dump()
    framing = Framing.around(load_glb(glb))
    points = np.c_[mesh.vertices, np.ones(len(mesh.vertices))]  # (V, 4)
    clip = points @ (framing.projection_matrix() @ framing.view_matrix(view)).T  # (V, 4)
    ndc = clip[:, :3] / clip[:, 3:]
    xy = np.stack([(ndc[:, 0] + 1) * size / 2, (1 - ndc[:, 1]) * size / 2], axis=1)  # pixels, y down
    result = rasterize(
        torch.tensor(xy, dtype=torch.float32), torch.tensor(mesh.faces), size, size, barycentrics=False
    )
    return result.mask.numpy()


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def pixel_of(glb: bytes, view: OrbitView, size: int, point: tuple[float, float, float]) -> tuple[int, int]:
    """(row, column) of the pixel that shows a world point (glTF frame) from ``view``."""
    framing = Framing.around(load_glb(glb))
    clip = (framing.projection_matrix() @ framing.view_matrix(view)) @ np.array([*point, 1.0])
    x, y = clip[0] / clip[3], clip[1] / clip[3]
    return int((1 - y) * size / 2), int((x + 1) * size / 2)


def arkit_problems(path: Path) -> list[str]:
    """USD's ARKit compliance checker (what ``usdchecker --arkit`` runs): its errors, failed checks and warnings."""
    from pxr import UsdUtils

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        checker = UsdUtils.ComplianceChecker(arkit=True)
    checker.CheckCompliance(str(path))
    return [*checker.GetErrors(), *checker.GetFailedChecks(), *checker.GetWarnings()]


@dataclass
class DecodedVideo:
    codec: str
    size: tuple[int, int]
    """(width, height)"""
    seconds: float
    frames: list[np.ndarray]
    """(H, W, 3) uint8 RGB each."""


def decode_mp4(data: bytes) -> DecodedVideo:
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
        return DecodedVideo(
            codec=stream.codec_context.name,
            size=(stream.width, stream.height),
            seconds=float(stream.duration * stream.time_base),
            frames=frames,
        )
