"""The TRELLIS image condition both SyncHuman stages use: a 518x518 crop -> DINOv2 tokens.

:func:`trellis_image` reproduces TRELLIS's ``preprocess_image`` for RGBA input:
a square crop of side ``int(1.2 * max(w, h))`` centred on the box of pixels
with alpha > 0.8*255 (zero-filled outside the image), LANCZOS resize to 518,
RGB premultiplied by alpha (black background), truncated to uint8.
:func:`trellis_condition` turns it into the ``cond`` tokens [B, 1374, D]; the
unconditional branch uses zeros of the same shape.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from pipelines.base import PipelineInputError
from pipelines.synchuman.dinov2 import DinoV2, normalize_imagenet

TRELLIS_SIZE = 518
ALPHA_THRESHOLD = 0.8 * 255
CROP_MARGIN = 1.2


def trellis_image(image: Image.Image, size: int = TRELLIS_SIZE) -> Image.Image:
    """RGBA person image -> RGB ``size`` x ``size`` crop on black, as TRELLIS prepares it."""
    if image.mode != "RGBA":
        raise PipelineInputError("invalid_image", "the TRELLIS condition needs an RGBA image")
    alpha = np.asarray(image)[:, :, 3]
    ys, xs = np.nonzero(alpha > ALPHA_THRESHOLD)
    if xs.size == 0:
        raise PipelineInputError("no_foreground", "the image has no opaque (alpha > 0.8) pixels")
    x0, y0, x1, y1 = xs.min(), ys.min(), xs.max(), ys.max()
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    side = int(max(x1 - x0, y1 - y0) * CROP_MARGIN)
    box = (cx - side // 2, cy - side // 2, cx + side // 2, cy + side // 2)  # floats; Pillow rounds them
    crop = image.crop(box).resize((size, size), Image.Resampling.LANCZOS)
    rgba = np.asarray(crop).astype(np.float32) / 255
    rgb = rgba[:, :, :3] * rgba[:, :, 3:4]
    return Image.fromarray((rgb * 255).astype(np.uint8))


def image_batch(images: list[Image.Image], device: torch.device | str = "cpu") -> torch.Tensor:
    """RGB PIL images -> [B, 3, H, W] float32 in [0, 1]."""
    arrays = [np.asarray(im.convert("RGB"), dtype=np.float32) / 255 for im in images]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous().to(device)


@torch.no_grad()
def trellis_condition(dinov2: DinoV2, images: list[Image.Image]) -> torch.Tensor:
    """518x518 RGB crops (from :func:`trellis_image`) -> ``cond`` [B, 1374, D] in float32."""
    weight = dinov2.patch_embed.proj.weight
    pixels = normalize_imagenet(image_batch(images, weight.device)).to(weight.dtype)
    return dinov2.trellis_condition(pixels).float()
