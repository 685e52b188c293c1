"""Opaque test photos with a known person mask: the samples' true alpha over real backgrounds.

Each sample cut-out (``../shared/samples/*.png``) is composited onto opaque
backgrounds of its own size and saved as JPEG quality 90, so a segmenter sees
what a phone photo gives it: compression noise, a background that may be
plain, graded, busy or photographic.  The ground truth is the sample's alpha.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image

ALPHA_TRUTH = 127
"""Alpha above which a sample's pixel is the person, for IoU."""


def flat_grey(width: int, height: int) -> np.ndarray:
    """(H, W, 3) uint8: a light grey wall."""
    return np.full((height, width, 3), 205, dtype=np.uint8)


def gradient(width: int, height: int) -> np.ndarray:
    """(H, W, 3) uint8: a diagonal blue-to-orange gradient."""
    t = (np.arange(width)[None, :] / width + np.arange(height)[:, None] / height)[..., None] / 2
    start, end = np.array([40, 70, 150]), np.array([235, 170, 90])
    return (start + t * (end - start)).astype(np.uint8)


def busy_noise(width: int, height: int) -> np.ndarray:
    """(H, W, 3) uint8: coloured blobs of every size (smoothed noise at several scales)."""
    rng = np.random.default_rng(19)
    total = np.zeros((height, width, 3), dtype=np.float32)
    for cells in (4, 16, 64):
        coarse = rng.random((cells, cells, 3)).astype(np.float32)
        total += np.asarray(Image.fromarray((coarse * 255).astype(np.uint8)).resize((width, height), Image.BICUBIC))
    total += rng.integers(0, 255, (height, width, 3)).astype(np.float32)
    return (total / 4).clip(0, 255).astype(np.uint8)


def photograph(width: int, height: int) -> np.ndarray:
    """(H, W, 3) uint8: scikit-image's coffee-cup photograph (no person in it), resized to cover."""
    from skimage import data

    photo = Image.fromarray(data.coffee())
    scale = max(width / photo.width, height / photo.height)
    photo = photo.resize((round(photo.width * scale) + 1, round(photo.height * scale) + 1), Image.BICUBIC)
    return np.asarray(photo)[:height, :width]


BACKGROUNDS: dict[str, Callable[[int, int], np.ndarray]] = {
    "grey": flat_grey,
    "gradient": gradient,
    "noise": busy_noise,
    "photo": photograph,
}
PLAIN_BACKGROUNDS = ("grey", "gradient")


@dataclass
class Composite:
    name: str
    photo: Image.Image
    """The opaque RGB photo, decoded from JPEG quality 90."""
    truth: np.ndarray
    """(H, W) bool: the person."""


def composite(cutout: Image.Image, background: np.ndarray, name: str) -> Composite:
    """`cutout` (RGBA) over `background` ((H, W, 3) uint8, the cut-out's size), through JPEG q90."""
    rgba = np.asarray(cutout.convert("RGBA"), dtype=np.float32)
    alpha = rgba[..., 3:] / 255.0
    mixed = rgba[..., :3] * alpha + background.astype(np.float32) * (1.0 - alpha)
    buffer = io.BytesIO()
    Image.fromarray(mixed.round().astype(np.uint8)).save(buffer, format="JPEG", quality=90)
    photo = Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")
    return Composite(name, photo, rgba[..., 3] > ALPHA_TRUTH)


def with_margin(cutout: Image.Image, fraction: float = 0.15) -> Image.Image:
    """The cut-out on a transparent canvas larger by `fraction` of its size on every side."""
    margin = round(max(cutout.size) * fraction)
    canvas = Image.new("RGBA", (cutout.width + 2 * margin, cutout.height + 2 * margin), (0, 0, 0, 0))
    canvas.paste(cutout, (margin, margin))
    return canvas


def small_in_large(cutout: Image.Image, height: int = 400, size: int = 3000) -> Image.Image:
    """The person scaled to `height` px tall, placed off-centre on a transparent `size` square."""
    alpha = np.asarray(cutout.getchannel("A"))
    ys, xs = np.nonzero(alpha)
    person = cutout.crop((xs.min(), ys.min(), xs.max() + 1, ys.max() + 1))
    width = round(person.width * height / person.height)
    person = person.resize((width, height), Image.LANCZOS)
    canvas = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    canvas.paste(person, (size * 2 // 3, size // 2))
    return canvas


def iou(mask: np.ndarray, truth: np.ndarray) -> float:
    return float((mask & truth).sum() / max(int((mask | truth).sum()), 1))
