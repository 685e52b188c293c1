"""Checks an uploaded photo before anything is stored.

Order matters: cheap checks first, and nothing is fully decoded before its
pixel count is known to be within the cap.

1. size: not empty, not over ``api.max_upload_bytes``;
2. magic bytes: PNG, JPEG or WebP (other image formats get ``unsupported_format``);
3. header: width * height within ``api.max_pixels`` (decompression bombs stop here);
4. full decode (truncated or corrupt files fail here);
5. EXIF orientation applied, high-bit-depth grayscale scaled to 8 bits;
6. RGBA: some pixel has alpha > 0 (a foreground exists).  Opaque photos are
   segmented by the pipeline itself.

The result is the image as a PNG (the original bytes when already a plain PNG).
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

from PIL import Image, ImageOps, UnidentifiedImageError

from shared.errors import (
    EmptyUploadError,
    ImageTooLargeError,
    InvalidImageError,
    NoForegroundError,
    PayloadTooLargeError,
    UnsupportedFormatError,
)
from shared.settings import ApiSettings

ACCEPTED_MAGIC = {
    "PNG": (b"\x89PNG\r\n\x1a\n",),
    "JPEG": (b"\xff\xd8\xff",),
}
OTHER_IMAGE_MAGIC = {
    b"GIF87a": "GIF",
    b"GIF89a": "GIF",
    b"BM": "BMP",
    b"II*\x00": "TIFF",
    b"MM\x00*": "TIFF",
    b"\x00\x00\x01\x00": "ICO",
    b"8BPS": "PSD",
    b"qoif": "QOI",
}
ORIENTATION_TAG = 0x0112
WIDE_GRAY_MODES = frozenset({"I", "I;16", "I;16B", "I;16L", "I;16N"})
"""Pillow's modes of 16-bit (and 32-bit integer) grayscale: values up to 65535, not 255."""
INLINE_DECODE_PIXELS = 1_000_000
"""Images up to this many pixels (read from the header) are decoded on the event loop; larger ones,
whatever their byte size, in a thread (a 36-megapixel PNG can weigh 150 KB)."""


@dataclass(frozen=True)
class CheckedImage:
    png: bytes
    """The normalised image (PNG, orientation applied)."""
    width: int
    height: int
    mode: str
    """``RGBA`` (cut-out person) or ``RGB`` (opaque photo, segmented by the pipeline)."""


def sniff_format(data: bytes) -> str:
    """``PNG``, ``JPEG`` or ``WEBP``; raises for anything else."""
    for name, prefixes in ACCEPTED_MAGIC.items():
        if data.startswith(prefixes):
            return name
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    for prefix, name in OTHER_IMAGE_MAGIC.items():
        if data.startswith(prefix):
            raise UnsupportedFormatError(f"{name} images are not supported; send PNG, JPEG or WebP")
    if data[4:12] in (b"ftypavif", b"ftypheic", b"ftypmif1", b"ftypheix"):
        raise UnsupportedFormatError("HEIF/AVIF images are not supported; send PNG, JPEG or WebP")
    raise InvalidImageError("the upload is not an image (expected PNG, JPEG or WebP)")


def decodes_quickly(data: bytes) -> bool:
    """True when ``data`` is small and its header declares at most ``INLINE_DECODE_PIXELS`` pixels.

    Reads the header only.  Data that is not an image answers True: it fails at once in
    :func:`check_image` without any decoding.
    """
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
    except Exception:  # noqa: BLE001 - check_image gives the real error
        return True
    return width * height <= INLINE_DECODE_PIXELS


def check_image(data: bytes, settings: ApiSettings) -> CheckedImage:
    """Validate and normalise one uploaded photo; raises a ``shared.errors`` input error."""
    if not data:
        raise EmptyUploadError("the image is empty (0 bytes)")
    if len(data) > settings.max_upload_bytes:
        raise PayloadTooLargeError(f"the image is larger than {settings.max_upload_bytes} bytes")
    fmt = sniff_format(data)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=[fmt])
            width, height = image.size
            if width * height > settings.max_pixels:
                raise ImageTooLargeError(
                    f"the image has {width}x{height} pixels; the limit is {settings.max_pixels} pixels"
                )
            if min(width, height) < settings.min_side:
                raise InvalidImageError(f"the image is {width}x{height}; each side must be at least {settings.min_side} px")
            image.load()
    except (ImageTooLargeError, InvalidImageError):
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageTooLargeError(
            f"the image declares too many pixels to decode safely; the limit is {settings.max_pixels} pixels"
        ) from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise InvalidImageError(f"the {fmt} image cannot be decoded (truncated or corrupt): {exc}") from exc

    has_alpha = image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info)
    orientation = image.getexif().get(ORIENTATION_TAG, 1) if fmt != "PNG" or "exif" in image.info else 1
    untouched = fmt == "PNG" and orientation == 1 and image.mode in ("RGB", "RGBA")

    if orientation != 1:
        image = ImageOps.exif_transpose(image)
    if image.mode in WIDE_GRAY_MODES:  # convert() would clip every value above 255 to white
        image = image.convert("I").point(lambda value: value / 257).convert("L")
    target_mode = "RGBA" if has_alpha else "RGB"
    if image.mode != target_mode:
        image = image.convert(target_mode)
    if has_alpha and image.getbbox(alpha_only=True) is None:  # the bounding box of alpha > 0
        raise NoForegroundError("the image is fully transparent: no person is visible")

    if untouched:
        png = data
    else:
        buf = io.BytesIO()
        image.save(buf, format="PNG", compress_level=1)
        png = buf.getvalue()
    return CheckedImage(png=png, width=image.width, height=image.height, mode=image.mode)
