"""Images that are not people, for the person check: a product shot of a cube and a brick wall."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw


def cube_cutout(size: int = 768) -> Image.Image:
    """RGBA: a shaded cube on a transparent background (three faces, as a product shot shows it)."""
    image = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    s = size / 768
    top = [(384, 120), (624, 240), (384, 360), (144, 240)]
    left = [(144, 240), (384, 360), (384, 660), (144, 540)]
    right = [(384, 360), (624, 240), (624, 540), (384, 660)]
    for face, colour in ((top, (220, 90, 70, 255)), (left, (170, 60, 50, 255)), (right, (120, 40, 35, 255))):
        draw.polygon([(x * s, y * s) for x, y in face], fill=colour)
    return image


def texture(size: int = 1024) -> Image.Image:
    """RGB: scikit-image's brick-wall texture, tiled to `size` (no person in it)."""
    from skimage import data

    brick = data.brick()  # (512, 512) uint8 grey
    tiled = np.tile(brick, (size // brick.shape[0] + 1, size // brick.shape[1] + 1))[:size, :size]
    return Image.fromarray(np.stack([tiled, (tiled * 0.8).astype(np.uint8), (tiled * 0.6).astype(np.uint8)], -1))
