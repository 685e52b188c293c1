"""Encoding of rendered frames: PNG stills, H.264 MP4 and animated WebP.

Frames come from ``render.ModelRenderer``: (H, W, 4) uint8 RGBA, the model
composited over a background colour with its coverage as alpha.  A PNG still
is rendered over black (colours premultiplied by alpha, anti-aliased edges);
video frames over the video's background without multisampling, so that
their RGB is the opaque MP4 frame and, alpha being 0 or 255, RGBA is also the
WebP frame as it is.

H.264 is written by FFmpeg's libx264 through PyAV (the wheel ships FFmpeg);
animated WebP by Pillow's libwebp.
"""

from __future__ import annotations

import io
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

import av
import numpy as np
from PIL import Image

H264_OPTIONS = {"crf": "23", "preset": "veryfast"}
"""Constant quality (x264's default crf) at a fast preset: a 5 s turntable is about 160 KB."""


def png_bytes(frame: np.ndarray) -> bytes:
    """An RGBA PNG of a frame rendered over black (premultiplied colours), with straight alpha."""
    buf = io.BytesIO()
    height, width = frame.shape[:2]
    premultiplied = Image.frombytes("RGBa", (width, height), np.ascontiguousarray(frame).tobytes())
    premultiplied.convert("RGBA").save(buf, format="PNG")
    return buf.getvalue()


def mp4_bytes(frames: Iterable[np.ndarray], fps: int) -> bytes:
    """An H.264 MP4 (yuv420p, ``fps`` frames a second, index at the front for streaming playback).

    ``frames`` are (H, W, 4) uint8 of opaque colours (alpha is ignored).
    Frames are encoded as they arrive, so the caller may render them lazily.
    The muxer rewrites the file to move its index first, which needs a real
    file: the video is written to a temporary one.
    """
    with tempfile.TemporaryDirectory(prefix="turntable-") as folder:
        path = Path(folder) / "turntable.mp4"
        with av.open(str(path), mode="w", format="mp4", options={"movflags": "+faststart"}) as container:
            stream = None
            for frame in frames:
                if stream is None:
                    stream = container.add_stream("libx264", rate=fps, options=dict(H264_OPTIONS))
                    stream.height, stream.width = frame.shape[:2]
                    stream.pix_fmt = "yuv420p"
                container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgba")))
            if stream is None:
                raise ValueError("a video needs at least one frame")
            container.mux(stream.encode(None))  # flush the encoder's delayed frames
        return path.read_bytes()


def animated_webp_bytes(frames: Sequence[np.ndarray], fps: float, quality: int = 75) -> bytes:
    """A looping animated WebP with transparency, ``fps`` frames a second.

    ``frames`` are (H, W, 4) uint8 RGBA with straight (not premultiplied) alpha.
    ``method=0`` is libwebp's fastest setting: a few times faster than its
    default for a file about a fifth larger.
    """
    if not frames:
        raise ValueError("an animation needs at least one frame")
    images = [Image.fromarray(np.ascontiguousarray(frame)) for frame in frames]
    buf = io.BytesIO()
    images[0].save(
        buf,
        format="WEBP",
        save_all=True,
        append_images=images[1:],
        duration=round(1000.0 / fps),
        loop=0,
        quality=quality,
        method=0,
    )
    return buf.getvalue()
