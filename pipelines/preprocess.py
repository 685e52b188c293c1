"""Stage-1 input preprocessing, exactly as the official model does it.

The official stage 1 (spec section 3.1a) crops the RGBA photo to the bounding
box of non-zero alpha, scales the longer side to 768 with Pillow's default
filter, pastes it centred on a transparent 768x768 canvas and cuts the face
view out of the canvas box x in [256, 512), y in [0, 256).  Every pipeline
starts from these two images so that their views line up with the official
ones pixel for pixel.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from pipelines.base import VIEW_SIZE, PipelineInputError

FACE_BOX = (256, 0, 512, 256)
"""Canvas box (left, top, right, bottom) the face close-up is cut from."""


@dataclass
class MultiviewInputs:
    body: Image.Image
    """768x768 RGBA canvas with the person centred, touching two opposite edges."""
    face: Image.Image
    """768x768 RGBA close-up of the canvas's top-centre box."""


def alpha_bbox(image: Image.Image, threshold: int = 0) -> tuple[int, int, int, int] | None:
    """(min_x, min_y, max_x, max_y) of pixels with alpha > threshold, or None if none.

    The max values are the last matching index (inclusive), as the official
    code computes them; Pillow's crop then drops that row and column.
    """
    alpha = np.asarray(image.getchannel("A"))
    ys, xs = np.nonzero(alpha > threshold)
    if xs.size == 0:
        return None
    return int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())


def multiview_inputs(image: Image.Image, size: int = VIEW_SIZE) -> MultiviewInputs:
    """Crop, scale and centre an RGBA person image as the official stage 1 does."""
    if image.mode != "RGBA":
        raise PipelineInputError("invalid_image", "stage 1 needs an RGBA image")
    box = alpha_bbox(image)
    if box is None:
        raise PipelineInputError("no_foreground", "the image has no visible (non-transparent) pixels")
    cropped = image.crop(box)
    w, h = cropped.size
    if w < 2 or h < 2:
        raise PipelineInputError("no_foreground", "the visible part of the image is too small")
    scale = size / max(w, h)
    new_w, new_h = int(scale * w), int(scale * h)
    resized = cropped.resize((new_w, new_h))  # Pillow default filter (bicubic), as official
    canvas = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    canvas.paste(resized, ((size - new_w) // 2, (size - new_h) // 2))
    face_box = tuple(v * size // VIEW_SIZE for v in FACE_BOX)
    face = canvas.crop(face_box).resize((size, size))
    return MultiviewInputs(body=canvas, face=face)


def on_white(image: Image.Image) -> np.ndarray:
    """RGBA image -> (H, W, 3) float32 in [0, 1], composited over white: rgb*a + (1 - a)."""
    rgba = np.asarray(image.convert("RGBA"), dtype=np.float32) / 255.0
    rgb, alpha = rgba[..., :3], rgba[..., 3:4]
    return rgb * alpha + (1.0 - alpha)
