"""Person segmentation backends behind one small interface, and the setting that picks one.

A backend turns a photo cropped around one person (whose pose is known) into
that person's probability map.  Two exist:

* ``mediapipe`` (default, CPU, bundled): the pose model's own whole-body
  segmentation, its outline re-decided by GrabCut (``refine.py``);
* ``onnx``: a rembg-compatible ONNX model the operator supplies
  (``rembg_onnx.py``), on the GPU when onnxruntime has CUDA.

MediaPipe's selfie model was measured too: alone it scores 0.77-0.98 IoU on the
composites of ``tests/person`` (against 0.92-0.99 for the pose model's mask)
and combining the two (maximum or mean) lowers the pose mask's worst case, so
it is not used.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np

from pipelines.person.pose import BodyPose
from pipelines.person.refine import RefineConfig, refine_mask

SEGMENTER_NAMES = ("mediapipe", "onnx")


class PersonSegmenter(Protocol):
    def segment(self, rgb: np.ndarray, pose: BodyPose) -> np.ndarray:
        """(H, W, 3) uint8 RGB around one person, and their pose in it -> (H, W) float32 probability."""
        ...


class PoseMaskSegmenter:
    """The pose model's segmentation, refined along its outline."""

    def __init__(self, refine: RefineConfig | None = RefineConfig()) -> None:
        self.refine = refine

    def segment(self, rgb: np.ndarray, pose: BodyPose) -> np.ndarray:
        if pose.mask is None:
            return np.zeros(rgb.shape[:2], dtype=np.float32)
        if self.refine is None:
            return pose.mask
        return refine_mask(rgb, pose.mask, self.refine)


def load_segmenter(
    name: str = "mediapipe", *, model: str | Path | None = None, weights_dir: str | Path | None = None, device: str = "cpu"
) -> PersonSegmenter:
    """The backend called `name`; ``onnx`` reads `model` (relative paths are under `weights_dir`).

    Raises ValueError for an unknown name or a missing model file.
    """
    if name == "mediapipe":
        return PoseMaskSegmenter()
    if name == "onnx":
        if model is None:
            raise ValueError("the onnx segmenter needs a model file (rembg-compatible .onnx)")
        path = Path(model)
        if not path.is_absolute():
            if weights_dir is None:
                raise ValueError(f"segmentation model {path} is relative but no weights directory is set")
            path = Path(weights_dir) / path
        if not path.is_file():
            raise ValueError(f"segmentation model {path} does not exist")
        from pipelines.person.rembg_onnx import RembgOnnxSegmenter

        return RembgOnnxSegmenter(path, device=device)
    raise ValueError(f"unknown segmenter {name!r}; choose one of {', '.join(SEGMENTER_NAMES)}")
