"""Person masks from a rembg-compatible ONNX model (u2net, ISNet, BiRefNet), run with onnxruntime.

The official SyncHuman code removes backgrounds with rembg's ``u2net``.  rembg's
models share one convention, which any file the operator supplies must follow:

* one input, float32 ``(1, 3, S, S)``: the RGB image resized to S x S, divided
  by its maximum value, then normalised per channel with the family's mean and
  standard deviation (S is read from the model when fixed, else the family's);
* the first output's channel 0, ``(1, 1, S, S)`` or ``(1, S, S)`` in any
  layout that squeezes to ``(S, S)``: the person's saliency, rescaled to
  [0, 1] by its minimum and maximum (BiRefNet's logits pass a sigmoid first).

| family (file name contains) | size | mean | std | output |
| --- | --- | --- | --- | --- |
| ``u2net`` (u2net, u2netp, u2net_human_seg) and any other | 320 | ImageNet | ImageNet | as is |
| ``isnet`` (isnet-general-use) | 1024 | 0.5 | 1.0 | as is |
| ``birefnet`` (any BiRefNet export) | 1024 | ImageNet | ImageNet | sigmoid |

The file is read from disk once; nothing is downloaded.  On a worker with
``onnxruntime-gpu`` and a CUDA device the model runs on the GPU.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from pipelines.person.pose import BodyPose

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class RembgFamily:
    size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    sigmoid: bool = False


FAMILIES: dict[str, RembgFamily] = {
    "birefnet": RembgFamily(1024, IMAGENET_MEAN, IMAGENET_STD, sigmoid=True),
    "isnet": RembgFamily(1024, (0.5, 0.5, 0.5), (1.0, 1.0, 1.0)),
    "u2net": RembgFamily(320, IMAGENET_MEAN, IMAGENET_STD),
}


def family_of(path: Path) -> RembgFamily:
    """The rembg family a model file belongs to, from its name (u2net's when unknown)."""
    name = path.name.lower()
    for key, family in FAMILIES.items():
        if key in name:
            return family
    return FAMILIES["u2net"]


class RembgOnnxSegmenter:
    """:class:`~pipelines.person.segmenters.PersonSegmenter` backed by a rembg-compatible ONNX file."""

    def __init__(self, path: str | Path, *, device: str = "cpu") -> None:
        import onnxruntime

        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"segmentation model {self.path} does not exist")
        available = onnxruntime.get_available_providers()
        wanted = ["CPUExecutionProvider"]
        if device.startswith("cuda") and "CUDAExecutionProvider" in available:
            index = int(device.partition(":")[2] or 0)
            wanted.insert(0, ("CUDAExecutionProvider", {"device_id": index}))
        self.session = onnxruntime.InferenceSession(str(self.path), providers=wanted)
        self.providers = self.session.get_providers()
        self.family = family_of(self.path)
        model_input = self.session.get_inputs()[0]
        self.input_name = model_input.name
        fixed = [d for d in model_input.shape[2:] if isinstance(d, int)]
        self.size = fixed[0] if len(fixed) == 2 else self.family.size
        self._lock = threading.Lock()

    def segment(self, rgb: np.ndarray, pose: BodyPose | None = None) -> np.ndarray:
        """(H, W, 3) uint8 RGB -> (H, W) float32 person probability; `pose` is not needed."""
        height, width = rgb.shape[:2]
        batch = self._normalise(rgb)  # (1, 3, S, S) float32
        with self._lock:
            outputs = self.session.run(None, {self.input_name: batch})
        saliency = np.asarray(outputs[0], dtype=np.float32)
        if saliency.ndim == 4:
            saliency = saliency[:, 0]
        saliency = saliency.reshape(saliency.shape[-2:])  # (S, S)
        if self.family.sigmoid:
            saliency = 1.0 / (1.0 + np.exp(-saliency))
        low, high = float(saliency.min()), float(saliency.max())
        if not np.isfinite(low) or not np.isfinite(high):
            raise RuntimeError(f"segmentation model {self.path.name} returned non-finite values")
        saliency = (saliency - low) / max(high - low, 1e-6)
        return cv2.resize(saliency, (width, height), interpolation=cv2.INTER_LINEAR)

    def _normalise(self, rgb: np.ndarray) -> np.ndarray:
        resized = cv2.resize(rgb, (self.size, self.size), interpolation=cv2.INTER_LANCZOS4).astype(np.float32)
        resized /= max(float(resized.max()), 1e-6)
        resized = (resized - np.array(self.family.mean, np.float32)) / np.array(self.family.std, np.float32)
        return np.ascontiguousarray(resized.transpose(2, 0, 1)[None])
