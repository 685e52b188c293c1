"""Fast downscaling of large photos for the person models (which look at 256 px at most)."""

from __future__ import annotations

import cv2
import numpy as np


def downscale(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """(H, W, ...) -> (height, width, ...) = `shape`, area-averaged; ``shape`` no larger than the image.

    Area averaging over a 12 MP photo is the costliest step of a small
    resize, so large factors first keep every k-th pixel (k at most half the
    factor: each output pixel still averages at least 2 x 2 samples).
    """
    height, width = shape
    step = int(min(image.shape[0] / height, image.shape[1] / width) // 2)
    if step >= 2:
        image = image[::step, ::step]
    return cv2.resize(np.ascontiguousarray(image), (width, height), interpolation=cv2.INTER_AREA)
