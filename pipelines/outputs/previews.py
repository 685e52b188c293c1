"""Pictures of the finished model: a thumbnail and a turntable, to choose from before opening a 3D viewer.

* ``thumbnail.png``: 512 x 512 RGBA, transparent background, the model seen
  from the front three-quarter (``render.FRONT_THREE_QUARTER``), anti-aliased.
* ``turntable.mp4``: 512 x 512 H.264, one full turn about the up axis in 5 s
  at 24 frames a second (120 frames), starting from the front, on white.
* ``turntable.webp``: the same turn as an animated WebP with transparency, at
  12 frames a second (every other frame), for pages that avoid video.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipelines.outputs.media import animated_webp_bytes, mp4_bytes, png_bytes
from pipelines.outputs.model import TexturedModel
from pipelines.outputs.render import FRONT_THREE_QUARTER, ModelRenderer, turntable_views

THUMBNAIL_SIZE = 512
TURNTABLE_SIZE = 512
TURNTABLE_SECONDS = 5
TURNTABLE_FPS = 24
VIDEO_BACKGROUND = (255, 255, 255)
"""What the MP4 shows around the model (it has no alpha; the WebP keeps the transparency)."""
WEBP_FRAME_STEP = 2
"""The WebP keeps one frame in this many (12 frames a second): its encoder is the slow part."""


@dataclass
class Turntable:
    mp4: bytes
    webp: bytes
    frames: int
    """Frames in the MP4."""


def thumbnail(model: TexturedModel, renderer: ModelRenderer) -> bytes:
    """``thumbnail.png``: the front three-quarter view, as PNG bytes."""
    (frame,) = renderer.render(model, [FRONT_THREE_QUARTER], THUMBNAIL_SIZE)
    return png_bytes(frame)


def turntable(model: TexturedModel, renderer: ModelRenderer) -> Turntable:
    """``turntable.mp4`` and ``turntable.webp``: frames are encoded as they are rendered."""
    count = TURNTABLE_SECONDS * TURNTABLE_FPS
    webp_frames: list[np.ndarray] = []

    def frames():
        views = turntable_views(count)
        # No multisampling: the motion hides the stair-steps, it halves the rendering time,
        # and alpha stays 0 or 255, so each frame is both the MP4's (RGB) and the WebP's (RGBA).
        rendered = renderer.render(model, views, TURNTABLE_SIZE, samples=0, background=VIDEO_BACKGROUND)
        for index, frame in enumerate(rendered):
            if index % WEBP_FRAME_STEP == 0:
                webp_frames.append(frame)
            yield frame

    mp4 = mp4_bytes(frames(), TURNTABLE_FPS)
    webp = animated_webp_bytes(webp_frames, TURNTABLE_FPS / WEBP_FRAME_STEP)
    return Turntable(mp4=mp4, webp=webp, frames=count)
