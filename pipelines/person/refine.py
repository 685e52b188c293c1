"""Edge refinement of a coarse person mask with OpenCV's GrabCut.

The pose model's segmentation is a 256x256 map: its outline is soft and, where
the background has the person's colours (a dark robe beside a dark saucer), it
bleeds into the background.  GrabCut re-decides a band around that outline
from colour models of the photo itself: the mask's eroded interior is taken as
certain person, everything beyond the dilated outline as certain background.

Measured on the sample cut-outs composited on four backgrounds (see
``tests/person/test_cutout.py``), it raises the worst IoU from 0.92 (the pose
mask alone) to 0.97, for about 0.1 s of CPU at 512 px with one iteration.  A
second iteration changes nothing measurable; 448 px loses 0.01 and 384 px 0.035
of the worst IoU.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class RefineConfig:
    size: int = 512
    """Long side, in pixels, GrabCut works at (the mask is scaled back afterwards)."""
    iterations: int = 1
    band: float = 0.04
    """Half-width of the undecided band around the outline, as a fraction of the long side."""


def refine_mask(rgb: np.ndarray, probability: np.ndarray, config: RefineConfig = RefineConfig()) -> np.ndarray:
    """(H, W, 3) uint8 photo + (H, W) float32 coarse person probability -> (H, W) float32 refined.

    The result is GrabCut's hard decision at the working size, scaled back
    bilinearly (so its edges are soft over about one working pixel).
    """
    height, width = probability.shape
    scale = min(1.0, config.size / max(height, width))
    shape = (max(1, round(width * scale)), max(1, round(height * scale)))
    small = cv2.resize(rgb, shape, interpolation=cv2.INTER_AREA)
    coarse = cv2.resize(probability, shape, interpolation=cv2.INTER_AREA) > 0.5  # (h, w) bool
    if not coarse.any() or coarse.all():
        return probability

    radius = max(1, round(config.band * max(shape)))
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    inside = cv2.erode(coarse.astype(np.uint8), disc) > 0
    outside = cv2.dilate(coarse.astype(np.uint8), disc) == 0
    labels = np.where(coarse, cv2.GC_PR_FGD, cv2.GC_PR_BGD).astype(np.uint8)
    labels[inside] = cv2.GC_FGD
    labels[outside] = cv2.GC_BGD
    if not outside.any() or not inside.any():  # GrabCut needs samples of both
        return probability

    background_model = np.zeros((1, 65), np.float64)
    foreground_model = np.zeros((1, 65), np.float64)
    bgr = cv2.cvtColor(small, cv2.COLOR_RGB2BGR)
    cv2.setRNGSeed(0)  # GrabCut seeds its colour models with k-means: the same photo, the same mask
    cv2.grabCut(bgr, labels, None, background_model, foreground_model, config.iterations, cv2.GC_INIT_WITH_MASK)
    person = ((labels == cv2.GC_FGD) | (labels == cv2.GC_PR_FGD)).astype(np.float32)
    return cv2.resize(person, (width, height), interpolation=cv2.INTER_LINEAR)
