"""Colours of the inflated body: the photo on the front, a completion on the back.

Because the body surface is a graph over the front view (``inflation.py``),
every surface point (x, y, z) lies on the line of sight of canvas pixel
c = (x + 0.5)*S - 0.5, r = (0.5 - z)*S - 0.5 of the S = 768 px stage-1 input.
Colour is looked up there, in one of two images of the same geometry:

* the **front** image is the photo itself, its colours pushed outward past the
  silhouette so that points on the rim never pick up the background;
* the **back** image is a guess of what the person looks like from behind:
  the same clothes with their details removed (a large median filter keeps
  the garment colours and drops prints, buttons and the face), and the head
  filled with the colour of the top of the head (hair, or a hat), fading into
  the body at the neck.

A point's colour blends the two by its normal: facing the camera (n_y < 0) it
shows the front, facing away the back, half and half on the flank.  The same
function colours the rendered side and back views and the baked texture, so
the model and its stage-1 views agree.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy import ndimage


@dataclass(frozen=True)
class AppearanceConfig:
    back_median_size: int = 31
    """Median filter width (px at 768) that strips details off the back."""
    back_darkening: float = 0.93
    """Back colours are a little darker: a back is usually in the shade of the photo's light."""
    flank_width: float = 0.35
    """|n_y| below which front and back colours blend."""
    head_search: tuple[float, float] = (0.08, 0.3)
    """Band (fractions of the person's height from the top) in which a head ends."""
    shoulder_ratio: float = 1.4
    """A row this much wider than the head is taken as the shoulders."""
    hair_sample: float = 0.25
    """Top fraction of the head whose median colour fills the back of the head."""


@dataclass
class Appearance:
    """Front and back colour images over the canvas, and the blend between them."""

    front: np.ndarray
    """(S, S, 3) float32 RGB in [0, 1]: the photo, extended past the silhouette."""
    back: np.ndarray
    """(S, S, 3) float32 RGB in [0, 1]: the completed back, same geometry (column = x)."""
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
        cols = (pts[:, 0] + 0.5) * size - 0.5
        rows = (0.5 - pts[:, 2]) * size - 0.5
        front = _bilinear(self.front, cols, rows)  # (N, 3)
        back = _bilinear(self.back, cols, rows)
        t = np.clip(0.5 - nrm[:, 1:2] / (2.0 * self.config.flank_width), 0.0, 1.0)  # 1 = front
        t = t * t * (3.0 - 2.0 * t)  # smoothstep
        out = t * front + (1.0 - t) * back
        return np.clip(out, 0.0, 1.0).reshape(*shape, 3)


def build_appearance(canvas_rgba: np.ndarray, config: AppearanceConfig = AppearanceConfig()) -> Appearance:
    """Front and back images from the (S, S, 4) uint8 stage-1 input canvas."""
    rgb = canvas_rgba[..., :3]
    mask = canvas_rgba[..., 3] >= 128
    if not mask.any():
        mask = canvas_rgba[..., 3] > 0
    # Push the person's colours outward: every pixel takes its nearest person pixel's colour.
    _, (near_r, near_c) = ndimage.distance_transform_edt(~mask, return_indices=True)
    front_u8 = np.ascontiguousarray(rgb[near_r, near_c])  # (S, S, 3)
    back_u8 = cv2.medianBlur(front_u8, config.back_median_size | 1)
    back = back_u8.astype(np.float32) / 255.0 * config.back_darkening
    back = _fill_back_of_head(back, front_u8, mask, config)
    return Appearance(front=front_u8.astype(np.float32) / 255.0, back=back, config=config)


def neck_row(mask: np.ndarray, config: AppearanceConfig = AppearanceConfig()) -> tuple[int, int] | None:
    """(top row of the person, row of the neck) in the canvas, or None if no head is found.

    Widths are measured within the official face box's columns (the middle
    third, where the head is assumed to be).  Going down from the top of the
    head, the shoulders are the first row clearly wider than the head; the
    neck is the narrowest row between the head's widest row and the shoulders.
    Without clear shoulders, the narrowest row of the band where a head ends
    (``head_search``) is taken.
    """
    size = mask.shape[0]
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size < 8:
        return None
    top, bottom = int(rows[0]), int(rows[-1])
    height = bottom - top + 1
    lo = top + int(config.head_search[0] * height)
    hi = top + int(config.head_search[1] * height)
    widths = mask[top:hi, size // 3 : 2 * size // 3].sum(axis=1).astype(np.float32)  # (hi - top,)
    if widths.size < 4:
        return None
    widths = ndimage.uniform_filter1d(widths, 5)
    head_rows = max(lo - top, 1)
    head_peak = int(np.argmax(widths[:head_rows]))
    wider = np.flatnonzero(widths[head_rows:] > config.shoulder_ratio * widths[head_peak])
    if wider.size:
        shoulders = head_rows + int(wider[0])
        return top, top + head_peak + int(np.argmin(widths[head_peak:shoulders + 1]))
    return top, lo + int(np.argmin(widths[head_rows:]))


def _fill_back_of_head(
    back: np.ndarray, front_u8: np.ndarray, mask: np.ndarray, config: AppearanceConfig
) -> np.ndarray:
    found = neck_row(mask, config)
    if found is None:
        return back
    top, neck = found
    size = mask.shape[0]
    head_rows = neck - top
    sample_end = top + max(int(config.hair_sample * head_rows), 2)
    sample = front_u8[top:sample_end][mask[top:sample_end]]  # (K, 3)
    if len(sample) == 0:
        return back
    hair = np.median(sample.astype(np.float32), axis=0) / 255.0 * config.back_darkening  # (3,)
    # Weight 1 above the chin line, fading to 0 over a tenth of the head below the neck.
    rows = np.arange(size, dtype=np.float32)
    fade = max(head_rows * 0.15, 2.0)
    weight = np.clip((neck + fade - rows) / (2.0 * fade), 0.0, 1.0)[:, None, None]  # (S, 1, 1)
    columns = np.zeros((1, size, 1), dtype=np.float32)
    columns[0, size // 3 : 2 * size // 3, 0] = 1.0  # the head lies in the face box's columns
    columns = ndimage.gaussian_filter1d(columns, size / 96, axis=1)
    weight = weight * columns
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
