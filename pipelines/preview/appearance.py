"""Colours of the inflated body: the photo on the front, an invented back.

Because the body surface is a graph over the front view (``inflation.py``),
every surface point (x, y, z) lies on the line of sight of canvas pixel
c = (x + 0.5)*S - 0.5, r = (0.5 - z)*S - 0.5 of the S = 768 px stage-1 input.
Colour is looked up there, in one of two images of the same geometry:

* the **front** image is the photo itself, its colours pushed outward past the
  silhouette so that points on the rim never pick up the background;
* the **back** image (``back.py``) is a guess of what the person looks like
  from behind: the garments' dominant colours and texture without prints,
  hands or arms across the body, and the back of the head in the hair's
  colour.  Without a skeleton the head is found from the silhouette alone.

A point's colour blends the two by its normal: facing the camera (n_y < 0) it
shows the front, facing away the back, half and half on the flank.  On the
flank, where the surface turns away from the line of sight, one pixel of the
photo would be stretched over the whole side and the outline's fringe of
matting colours would streak it; the flank therefore looks the colour up a few
pixels inside the outline (``flank_inset``, along the normal's image-plane
direction), where front and back images both hold the garment's own colour,
and the more sideways it faces the more it takes a blurred mean of front and
back (``flank_blur``): the seam between front and back is a soft band, and
what the projection stretches there has no detail left to streak.
The same function colours the rendered side and back views and the baked
texture, so the model and its stage-1 views agree.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy import ndimage

from pipelines.preview.back import BackConfig, back_image
from pipelines.preview.skeleton import Skeleton


@dataclass(frozen=True)
class AppearanceConfig:
    back: BackConfig = BackConfig()
    flank_width: float = 0.35
    """|n_y| below which front and back colours blend."""
    flank_inset: float = 6.0
    """Pixels (at 768) inside the outline from which a point facing sideways takes its colour."""
    flank_blur: float = 4.0
    """Gaussian sigma (px at 768) of the front and back mean that colours the flank."""
    head_search_depth: float = 0.3
    """The head is looked for in this top fraction of the person's height."""
    shoulder_ratio: float = 1.4
    """A row this much wider than the head is taken as the shoulders."""
    min_head_rows: float = 0.03
    """Shoulders are not looked for above this fraction of the person's height (hats, hair)."""
    hair_sample: float = 0.25
    """Top fraction of the head whose median colour fills the back of the head."""


@dataclass
class Appearance:
    """Front and back colour images over the canvas, and the blend between them."""

    front: np.ndarray
    """(S, S, 3) float32 RGB in [0, 1]: the photo, extended past the silhouette."""
    back: np.ndarray
    """(S, S, 3) float32 RGB in [0, 1]: the completed back, same geometry (column = x)."""
    flank: np.ndarray
    """(S, S, 3) float32 RGB in [0, 1]: blurred mean of front and back, for the flank."""
    config: AppearanceConfig

    @property
    def size(self) -> int:
        return self.front.shape[0]

    def colors(self, points: np.ndarray, normals: np.ndarray) -> np.ndarray:
        """RGB in [0, 1] for world ``points`` (..., 3) with unit ``normals`` (..., 3)."""
        shape = points.shape[:-1]
        pts = points.reshape(-1, 3).astype(np.float32)
        nrm = normals.reshape(-1, 3).astype(np.float32)
        size = self.size
        # Sideways-facing points look a little inside the outline (against fringe streaks).
        inset = self.config.flank_inset * (1.0 - np.abs(nrm[:, 1]))  # (N,) px
        cols = (pts[:, 0] + 0.5) * size - 0.5 - nrm[:, 0] * inset
        rows = (0.5 - pts[:, 2]) * size - 0.5 + nrm[:, 2] * inset
        front = _bilinear(self.front, cols, rows)  # (N, 3)
        back = _bilinear(self.back, cols, rows)
        flank = _bilinear(self.flank, cols, rows)
        t = np.clip(0.5 - nrm[:, 1:2] / (2.0 * self.config.flank_width), 0.0, 1.0)  # 1 = front
        t = t * t * (3.0 - 2.0 * t)  # smoothstep
        sideways = np.clip(1.0 - np.abs(nrm[:, 1:2]) / self.config.flank_width, 0.0, 1.0) ** 2  # (N, 1)
        out = (1.0 - sideways) * (t * front + (1.0 - t) * back) + sideways * flank
        return np.clip(out, 0.0, 1.0).reshape(*shape, 3)


def build_appearance(
    canvas_rgba: np.ndarray, config: AppearanceConfig = AppearanceConfig(), skeleton: Skeleton | None = None
) -> Appearance:
    """Front and back images from the (S, S, 4) uint8 stage-1 input canvas (and the skeleton
    found on it, if any)."""
    rgb = canvas_rgba[..., :3]
    mask = canvas_rgba[..., 3] >= 128
    if not mask.any():
        mask = canvas_rgba[..., 3] > 0
    # Push the person's colours outward: every pixel takes its nearest person pixel's colour.
    _, (near_r, near_c) = ndimage.distance_transform_edt(~mask, return_indices=True)
    front_u8 = np.ascontiguousarray(rgb[near_r, near_c])  # (S, S, 3)
    back = back_image(front_u8, mask, skeleton, config.back)
    if skeleton is None:
        back = _fill_back_of_head(back, front_u8, mask, config)
    front = front_u8.astype(np.float32) / 255.0
    flank = cv2.GaussianBlur((front + back) / 2, (0, 0), config.flank_blur)
    return Appearance(front=front, back=back, flank=flank, config=config)


@dataclass(frozen=True)
class HeadBox:
    """Where the head is in the canvas (pixels): rows [top, bottom), columns [left, right)."""

    top: int
    bottom: int
    left: int
    right: int


def find_head(mask: np.ndarray, config: AppearanceConfig = AppearanceConfig()) -> HeadBox | None:
    """The head's box in the canvas, from the silhouette alone; None if there is no head.

    Going down from the top of the person, we follow the run of silhouette
    pixels under the crown.  It widens to the head's width, narrows at the
    neck and widens again at the shoulders (the first row clearly wider than
    the head a few rows higher, once the head is half as tall as wide).  The
    neck is the narrowest row between the head's widest row and the
    shoulders, kept between 1 and 1.5 head widths below the crown; without
    shoulders the head is taken as 1.3 times as tall as wide.  A crouching
    person whose shoulders rise beside the head still gets the head's own
    columns, since only the run under the crown counts.
    """
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size < 8:
        return None
    top, bottom = int(rows[0]), int(rows[-1])
    height = bottom - top + 1
    crown = int(round(np.flatnonzero(mask[top : top + 3].any(axis=0)).mean()))
    last = min(top + int(config.head_search_depth * height), mask.shape[0])
    widths, centres = [], []
    started = np.flatnonzero(mask[top:last, crown])
    if started.size == 0:
        return None
    top += int(started[0])  # stray hairs may stand above the crown's column
    for row in range(top, last):
        line = mask[row]
        if not line[crown]:
            break
        gaps_left = np.flatnonzero(~line[:crown])
        gaps_right = np.flatnonzero(~line[crown:])
        left = int(gaps_left[-1]) + 1 if gaps_left.size else 0  # first pixel of the run
        right = crown + int(gaps_right[0]) if gaps_right.size else len(line)  # one past its end
        widths.append(right - left)
        centres.append((left + right) / 2)
    if len(widths) < 4:
        return None
    widths_a = ndimage.median_filter(np.asarray(widths, dtype=np.float32), 5)  # (n,) keeps steps sharp
    widest = np.maximum.accumulate(widths_a)  # (n,) widest row from the crown down to each row
    shoulders = None
    for offset, width in enumerate(widths_a.tolist()):
        # Compare with the head as it was a few rows higher, so that shoulders rising
        # gradually into the head's run do not drag the reference width along.
        lag = max(3, int(0.15 * widest[offset]))
        reference = float(widest[offset - lag]) if offset >= lag else 0.0
        tall_enough = offset >= max(0.5 * widest[offset], config.min_head_rows * height)
        if tall_enough and reference > 0 and width > config.shoulder_ratio * reference:
            shoulders = offset
            break
    if shoulders is not None:
        end = shoulders - max(3, int(0.15 * widest[shoulders]))
        peak = int(np.argmax(widths_a[: end + 1]))
        head_width = float(widths_a[peak])
        neck = peak + int(np.argmin(widths_a[peak : shoulders + 1]))
        neck = int(np.clip(neck, head_width, 1.5 * head_width))
    else:
        peak = int(np.argmax(widths_a))
        head_width = float(widths_a[peak])
        neck = min(int(1.3 * head_width), len(widths_a) - 1)
    centre = centres[peak]
    half = 0.6 * head_width
    return HeadBox(top=top, bottom=top + neck, left=int(centre - half), right=int(np.ceil(centre + half)))


def _fill_back_of_head(
    back: np.ndarray, front_u8: np.ndarray, mask: np.ndarray, config: AppearanceConfig
) -> np.ndarray:
    head = find_head(mask, config)
    if head is None:
        return back
    size = mask.shape[0]
    head_rows = head.bottom - head.top
    sample_end = head.top + max(int(config.hair_sample * head_rows), 2)
    region = mask[head.top : sample_end, head.left : head.right]
    sample = front_u8[head.top : sample_end, head.left : head.right][region]  # (K, 3)
    if len(sample) == 0:
        return back
    hair = np.median(sample.astype(np.float32), axis=0) / 255.0 * config.back.darkening  # (3,)
    # Weight 1 inside the head box, fading out over a sixth of the head around its edges.
    fade = max(head_rows / 6.0, 2.0)
    rows = np.arange(size, dtype=np.float32)
    row_w = np.clip((head.bottom - rows) / fade + 0.5, 0.0, 1.0)  # (S,)
    col_w = np.clip(np.minimum(rows - head.left, head.right - rows) / fade + 0.5, 0.0, 1.0)  # (S,)
    weight = (row_w[:, None] * col_w[None, :])[..., None]  # (S, S, 1)
    return (1.0 - weight) * back + weight * hair[None, None, :]


def _bilinear(image: np.ndarray, cols: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Sample (S, S, 3) ``image`` at float pixel (cols, rows), clamped at the border."""
    n = cols.shape[0]
    width = 1024
    height = max((n + width - 1) // width, 1)
    pad = height * width - n
    map_x = np.pad(cols, (0, pad)).reshape(height, width).astype(np.float32)  # (h, 1024)
    map_y = np.pad(rows, (0, pad)).reshape(height, width).astype(np.float32)
    out = cv2.remap(image, map_x, map_y, interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return out.reshape(-1, 3)[:n]
