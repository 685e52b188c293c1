"""The preprocessing step every pipeline starts from: a photo in, one person cut out.

Run by the worker before stage 1 (its time is the job's ``preprocess`` stage),
so a photo that shows no person fails within a second, before any GPU work.

* A photo with real transparency (at least 2 % fully transparent pixels) is a
  cut-out: its alpha is used as is, after a size check and a person check.
* Any other photo (RGB, greyscale, opaque RGBA) is cut out: the pose model
  finds the person (``pose.py``: a small person in a large photo is found on
  tiles), a crop around them with a margin is segmented by the configured
  backend (``segmenters.py``), the mask is cleaned (largest parts kept,
  pinholes filled) and becomes the alpha of the crop.  Where the margin runs
  past the photo's edge the canvas is padded with transparent pixels.

The result is what the official preprocessing (rembg) hands to stage 1: an
RGBA image whose alpha marks the person; :func:`pipelines.preprocess.multiview_inputs`
then crops, scales and centres it exactly as the official code does.

Refusals are :class:`~pipelines.base.PipelineInputError` with a stable code:
``no_person`` when the pose model finds nobody (a cube, a texture, a
landscape; cut-outs included), ``no_foreground`` for an empty or tiny
foreground, ``segmenter_unavailable`` for an opaque photo on a machine without
MediaPipe (extra ``segment``).
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image
from scipy import ndimage

from pipelines.base import PipelineInputError
from pipelines.person.pose import BodyPose, estimate_pose
from pipelines.person.scaling import downscale
from pipelines.person.segmenters import PersonSegmenter, PoseMaskSegmenter

log = logging.getLogger("synchuman.pipelines")

NO_PERSON_MESSAGE = (
    "no person was found in the image: the service models people, so use a photo of one person, "
    "whole body in view"
)


@dataclass(frozen=True)
class CutoutConfig:
    """Thresholds deciding whether an image shows a usable person, and how it is cropped."""

    min_transparent_fraction: float = 0.02
    """An RGBA image counts as a cut-out when at least this fraction of it is fully
    transparent; otherwise (an opaque photo saved with alpha) it is segmented."""
    probability_threshold: float = 0.5
    """Segmenter probability above which a pixel belongs to the person."""
    min_pixels: int = 1024
    """Smallest person area in pixels, for cut-outs and photos alike."""
    max_area_fraction: float = 0.97
    """Largest person area in the crop: a mask covering all of it is not a cut-out."""
    min_extent: int = 32
    """Smallest height or width of the person's bounding box, in pixels."""
    min_component_fraction: float = 0.1
    """Components smaller than this fraction of the largest one are dropped."""
    max_pinhole_fraction: float = 0.0005
    """Holes in the mask smaller than this fraction of the crop are filled."""
    margin: float = 0.1
    """Margin around the person's box, on every side, as a fraction of its longer side."""
    check_width: int = 768
    """Long side a cut-out is scaled to (at most) for the person check."""
    work_size: int = 1024
    """Long side (at most) the person's crop is segmented and its mask cleaned at."""


DEFAULT_CONFIG = CutoutConfig()


@dataclass(frozen=True)
class PersonCrop:
    image: Image.Image
    """RGBA: the photo around the person (transparent where the box passes its edges), alpha = the person."""
    box: tuple[int, int, int, int]
    """(left, top, right, bottom) of `image` in the photo's pixels; may pass the photo's edges."""


class PersonCutout:
    """``cutout(image) -> RGBA`` person cut-out; one per worker, built once (its models load in ``warm``)."""

    def __init__(self, segmenter: PersonSegmenter | None = None, config: CutoutConfig = DEFAULT_CONFIG) -> None:
        self.segmenter = segmenter if segmenter is not None else PoseMaskSegmenter()
        self.config = config

    def warm(self) -> None:
        """Load the pose model now (a worker does it at start, not in its first job)."""
        if pose_model_available():
            estimate_pose(np.full((64, 64, 3), 128, dtype=np.uint8))

    def __call__(self, image: Image.Image) -> Image.Image:
        cutout = transparent_cutout(image, self.config)
        if cutout is not None:
            check_mask(np.asarray(cutout.getchannel("A")) > 0, self.config, segmented=False)
            self._check_person_in_cutout(cutout)
            return cutout
        return self.cut_out_photo(image).image

    def cut_out_photo(self, image: Image.Image) -> PersonCrop:
        """Opaque photo -> RGBA crop around the person, alpha = their mask.

        The crop keeps the photo's resolution; the mask is computed at
        ``config.work_size`` at most (the pose model's mask is 256 x 256, so
        larger sizes add time, not detail) and scaled back.
        """
        image = image if image.mode == "RGB" else image.convert("RGB")
        rgb = np.asarray(image)  # (H, W, 3) uint8
        pose = _estimate_pose(rgb)
        if pose is None:
            raise PipelineInputError("no_person", NO_PERSON_MESSAGE)
        height, width = rgb.shape[:2]
        left, top, right, bottom = person_box(pose, (height, width), self.config.margin)
        inner = (max(left, 0), max(top, 0), min(right, width), min(bottom, height))  # the part inside the photo
        crop = rgb[inner[1] : inner[3], inner[0] : inner[2]]  # (h, w, 3) view
        scale = min(1.0, self.config.work_size / max(crop.shape[:2]))
        work_rgb, work_pose = _scaled(crop, shift_pose(pose, inner), scale)
        probability = self.segmenter.segment(work_rgb, work_pose)  # (h', w') at the working size
        mask = clean_mask(probability, self.config)
        check_mask(mask, self.config, segmented=True, scale=scale)
        alpha = soft_alpha(probability, mask)
        if scale < 1.0:
            alpha = cv2.resize(alpha, (crop.shape[1], crop.shape[0]), interpolation=cv2.INTER_LINEAR)

        box = (left, top, right, bottom)
        cut = image.crop(box).convert("RGBA")  # Pillow pads outside the photo with black; alpha 0 there
        padded_alpha = Image.new("L", cut.size, 0)
        padded_alpha.paste(Image.fromarray(alpha), (inner[0] - left, inner[1] - top))
        cut.putalpha(padded_alpha)
        return PersonCrop(cut, box)

    def _check_person_in_cutout(self, cutout: Image.Image) -> None:
        """Refuse a cut-out of something else (``no_person``); skipped without MediaPipe."""
        if not pose_model_available():
            log.warning("person check skipped: mediapipe (extra 'segment') is not installed")
            return
        rgba = cutout.crop(_padded_box(cutout, self.config.margin))
        scale = min(1.0, self.config.check_width / max(rgba.size))
        if scale < 1.0:
            rgba = rgba.resize((max(1, round(rgba.width * scale)), max(1, round(rgba.height * scale))), Image.BILINEAR)
        on_white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        on_white.alpha_composite(rgba)
        if estimate_pose(np.asarray(on_white.convert("RGB"))) is None:
            raise PipelineInputError("no_person", NO_PERSON_MESSAGE)


def ensure_cutout(image: Image.Image, config: CutoutConfig = DEFAULT_CONFIG) -> Image.Image:
    """Stage 1's guard: a cut-out is kept (after its size check), any other photo is cut out.

    Pipelines called through the worker receive :class:`PersonCutout`'s result
    and take the first branch; called directly, they accept photos too.
    """
    cutout = transparent_cutout(image, config)
    if cutout is None:
        return _default_cutout()(image)
    check_mask(np.asarray(cutout.getchannel("A")) > 0, config, segmented=False)
    return cutout


def transparent_cutout(image: Image.Image, config: CutoutConfig = DEFAULT_CONFIG) -> Image.Image | None:
    """`image` as RGBA when it has real transparency (a cut-out), else None."""
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        alpha = np.asarray(rgba.getchannel("A"))
        if float((alpha == 0).mean()) >= config.min_transparent_fraction:
            return rgba
    return None


def pose_model_available() -> bool:
    """True when MediaPipe (the ``segment`` extra) is installed."""
    try:
        from mediapipe.python.solutions import pose  # noqa: F401
    except ImportError:
        return False
    return True


def person_box(pose: BodyPose, shape: tuple[int, int], margin: float) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) around the person's mask and landmarks plus `margin`; may pass the edges."""
    height, width = shape
    points = pose.landmarks.clip([0, 0], [width - 1, height - 1])
    low, high = points.min(axis=0), points.max(axis=0)
    if pose.mask is not None:
        x, y, w, h = cv2.boundingRect((pose.mask > 0.5).view(np.uint8))  # (0, 0, 0, 0) when empty
        if w and h:
            low = np.minimum(low, [x, y])
            high = np.maximum(high, [x + w, y + h])
    pad = margin * float(max(high - low)) + 8
    return (
        int(np.floor(low[0] - pad)),
        int(np.floor(low[1] - pad)),
        int(np.ceil(high[0] + pad)),
        int(np.ceil(high[1] + pad)),
    )


def shift_pose(pose: BodyPose, box: tuple[int, int, int, int]) -> BodyPose:
    """The pose in the coordinates of the image cropped to `box` (left, top, right, bottom)."""
    left, top, right, bottom = box
    mask = None if pose.mask is None else pose.mask[top:bottom, left:right]
    return dataclasses.replace(pose, landmarks=pose.landmarks - np.array([left, top], np.float32), mask=mask)


def clean_mask(probability: np.ndarray, config: CutoutConfig = DEFAULT_CONFIG) -> np.ndarray:
    """(H, W) probability -> (H, W) bool: thresholded, the large components kept, pinholes filled."""
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


def soft_alpha(probability: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """(H, W) uint8 alpha: 255 on `mask`, the probability in a thin band outside it, 0 beyond.

    ``alpha > 127`` is exactly `mask`; the band keeps the segmenter's anti-aliased edge.
    """
    radius = max(2, round(max(mask.shape) / 256))
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    band = (cv2.dilate(mask.astype(np.uint8), disc) > 0) & ~mask
    edge = np.minimum(probability, 0.49) * band
    return np.where(mask, 255, np.round(edge * 255)).astype(np.uint8)


def check_mask(mask: np.ndarray, config: CutoutConfig, *, segmented: bool, scale: float = 1.0) -> None:
    """Refuse an empty, tiny or frame-filling foreground (``no_foreground``).

    A cut-out may sit small on a large transparent canvas, and a segmented
    person is checked inside their crop, so only absolute sizes apply, plus a
    crop that the mask fills entirely.  `scale`: the mask's size relative to the photo.
    """
    pixels = int(np.count_nonzero(mask))
    if pixels == 0:
        raise PipelineInputError("no_foreground", "no person was found in the image")
    _, _, w, h = cv2.boundingRect(mask.view(np.uint8))
    extent = min(w, h)
    if pixels < config.min_pixels * scale**2 or extent < config.min_extent * scale:
        raise PipelineInputError(
            "no_foreground", "the person covers too small a part of the image to be reconstructed"
        )
    if segmented and pixels / mask.size > config.max_area_fraction:
        raise PipelineInputError("no_foreground", "no separable person was found in the image")


def _scaled(rgb: np.ndarray, pose: BodyPose, scale: float) -> tuple[np.ndarray, BodyPose]:
    """The image and its pose at `scale` times their size."""
    if scale >= 1.0:
        return np.ascontiguousarray(rgb), pose
    size = (max(1, round(rgb.shape[1] * scale)), max(1, round(rgb.shape[0] * scale)))
    small = downscale(rgb, (size[1], size[0]))
    mask = None if pose.mask is None else cv2.resize(pose.mask, size, interpolation=cv2.INTER_LINEAR)
    factor = np.float32(scale)
    return small, dataclasses.replace(pose, landmarks=pose.landmarks * factor, depth=pose.depth * factor, mask=mask)


def _estimate_pose(rgb: np.ndarray) -> BodyPose | None:
    try:
        return estimate_pose(rgb)
    except ImportError as exc:
        raise PipelineInputError(
            "segmenter_unavailable",
            "the image has no transparent background and no person segmenter is installed "
            "(install the 'segment' extra, or upload an RGBA cut-out)",
        ) from exc


def _padded_box(cutout: Image.Image, margin: float) -> tuple[int, int, int, int]:
    """The cut-out's alpha box widened by `margin` of its longer side, inside the image."""
    left, top, right, bottom = cutout.getchannel("A").getbbox()
    pad = round(margin * max(right - left, bottom - top)) + 8
    return max(0, left - pad), max(0, top - pad), min(cutout.width, right + pad), min(cutout.height, bottom + pad)


_DEFAULT: PersonCutout | None = None


def _default_cutout() -> PersonCutout:
    """The process-wide CPU cut-out for pipelines called directly with an opaque photo."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = PersonCutout()
    return _DEFAULT
