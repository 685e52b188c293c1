"""What the person looks like from behind, invented from the front photo.

The back image has the canvas's geometry (column = x, row = -z), so the body's
back surface looks it up exactly as its front looks up the photo.  It is the
photo with its front-only features taken out and filled in from the garments
around them (OpenCV's Telea inpainting):

1. **prints and small details**: the person's pixels are clustered by colour
   (k-means in Lab, seeded).  A pixel whose colour (its cluster and the
   clusters of similar colour) covers less than ``minority_share`` of a window
   half a torso wide around it is a detail of the front: a print, a logo,
   buttons, a neckline.  Large garments, their shading and folds stay.
2. **hands and arms across the body**: with a skeleton, the hands and the
   parts of the arms lying over the torso or the legs and nearer the camera
   than the torso are in front of the body, not on its back.
3. **back of the head**: the head is filled with the colour of the hair, the
   median colour of the head's pixels above the forehead, outside the face
   (found from the face landmarks; without a skeleton ``appearance.py``
   finds the head from the silhouette), fading into the body at the neck: no
   face, no ghost of one.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy import ndimage
from scipy.cluster.vq import kmeans2

from pipelines.person import pose as mp
from pipelines.preview.skeleton import Skeleton


@dataclass(frozen=True)
class BackConfig:
    clusters: int = 8
    """Colour clusters of the person's pixels (garments, their shades, skin, hair)."""
    similar_colour: float = 30.0
    """Lab distance under which two clusters count as one colour."""
    window_fraction: float = 0.6
    """Window around each pixel, as a fraction of the torso's width (of two fifths of the
    person's height without a skeleton)."""
    minority_share: float = 0.25
    """A colour covering less than this share of its window is a front-only detail."""
    inpaint_radius: float = 6.0
    """Neighbourhood (px at the working size) the inpainting fills each pixel from."""
    darkening: float = 0.93
    """Back colours are a little darker: a back is usually in the shade of the photo's light."""
    work_size: int = 384
    """The back is built at this resolution and scaled up to the canvas."""


def back_image(
    front_u8: np.ndarray, mask: np.ndarray, skeleton: Skeleton | None, config: BackConfig
) -> np.ndarray:
    """(S, S, 3) float32 RGB in [0, 1]: the back of the person on the canvas's grid.

    ``front_u8`` is the (S, S, 3) uint8 photo with its colours pushed past the
    outline, ``mask`` the (S, S) bool silhouette.
    """
    size = mask.shape[0]
    work = config.work_size
    photo = cv2.resize(front_u8, (work, work), interpolation=cv2.INTER_AREA)  # (W, W, 3)
    person = cv2.resize(mask.astype(np.uint8), (work, work), interpolation=cv2.INTER_NEAREST) > 0
    front_only = _front_only(skeleton, work) & person if skeleton is not None else np.zeros_like(person)
    voters = person & ~front_only

    # 1. colour clusters (seeded), and the share of each pixel's colour around it
    lab = cv2.cvtColor(photo, cv2.COLOR_RGB2LAB).astype(np.float32)  # (W, W, 3)
    samples = lab[voters][::3]
    k = int(min(config.clusters, max(len(samples) // 50, 1)))
    centroids, _ = kmeans2(samples, k, minit="++", seed=np.random.default_rng(0))
    labels = np.argmin(((lab[:, :, None, :] - centroids[None, None]) ** 2).sum(-1), axis=-1)  # (W, W)
    similar = np.linalg.norm(centroids[:, None] - centroids[None], axis=-1) < config.similar_colour  # (k, k)
    if skeleton is not None:
        width = float(np.linalg.norm(skeleton.torso[0] - skeleton.torso[1])) * work
    else:
        rows = np.flatnonzero(person.any(axis=1))
        width = 0.4 * (rows[-1] - rows[0] + 1) if rows.size else work / 4
    window = (max(int(config.window_fraction * width), 5),) * 2
    person_share = cv2.boxFilter(voters.astype(np.float32), -1, window, borderType=cv2.BORDER_CONSTANT)
    shares = np.stack([
        cv2.boxFilter((voters & (labels == c)).astype(np.float32), -1, window, borderType=cv2.BORDER_CONSTANT)
        for c in range(k)
    ])  # (k, W, W) share of the window of each cluster's voters
    support = np.einsum("ij,jhw->ihw", similar.astype(np.float32), shares)  # (k, W, W) similar colours
    own = np.take_along_axis(support, labels[None], 0)[0] / np.maximum(person_share, 1e-6)  # (W, W)
    details = person & (own < config.minority_share)

    # 2. fill the details, hands and arms across the body from the garments around them (the
    #    outside of the person first takes the colour of its nearest kept pixel, so that no
    #    removed colour comes back in from beyond the outline)
    holes = cv2.dilate(((details | front_only) & person).astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    kept = person & ~holes
    source = photo
    if kept.any():
        _, (near_r, near_c) = ndimage.distance_transform_edt(~kept, return_indices=True)
        source = np.where(kept[..., None], photo, photo[near_r, near_c])
    holes_u8 = (holes & person).astype(np.uint8)
    back = cv2.inpaint(source, holes_u8, config.inpaint_radius, cv2.INPAINT_TELEA).astype(np.float32) / 255.0

    # 3. the back of the head
    if skeleton is not None:
        head = _head_region(skeleton, photo.astype(np.float32) / 255.0, person, voters)
        if head is not None:
            weight, hair = head
            back = (1.0 - weight[..., None]) * back + weight[..., None] * hair
    back = back * config.darkening
    return cv2.resize(np.clip(back, 0.0, 1.0).astype(np.float32), (size, size), interpolation=cv2.INTER_LINEAR)


def _to_pixels(points: np.ndarray, size: int) -> np.ndarray:
    """(..., 2) world x, z -> (..., 2) float pixel col, row on a size x size canvas."""
    return np.stack([(points[..., 0] + 0.5) * size - 0.5, (0.5 - points[..., 1]) * size - 0.5], axis=-1)


def _front_only(skeleton: Skeleton, size: int, pieces: int = 8) -> np.ndarray:
    """(size, size) bool: the hands and arms where they lie over the torso or the legs and in
    front of the torso (by more than half its half-depth); arms hanging beside the body, seen
    from behind too, stay."""
    body = np.zeros((size, size), np.uint8)  # torso and legs
    front = np.zeros((size, size), np.uint8)  # arms and hands in front of the torso
    cv2.fillPoly(body, [np.round(_to_pixels(skeleton.torso, size) * 16).astype(np.int32)], 1, shift=4)
    margin = 0.5 * skeleton.torso_half_depth
    for capsule in skeleton.limbs:
        thickness = max(int(round(2 * capsule.radius * size)), 1)
        t = np.linspace(0.0, 1.0, pieces + 1)[:, None]
        points = (1 - t) * capsule.start + t * capsule.end  # (pieces + 1, 3)
        pixels = [tuple(int(v) for v in np.round(p)) for p in _to_pixels(points[:, [0, 2]], size)]
        if "thigh" in capsule.name or "shin" in capsule.name:
            cv2.line(body, pixels[0], pixels[-1], 1, thickness)
        if "arm" not in capsule.name:
            continue
        mids = (points[:-1] + points[1:]) / 2  # (pieces, 3)
        ahead = mids[:, 1] < skeleton.torso_depth_at(mids[:, 0], mids[:, 2]) - margin  # (pieces,)
        for piece in np.flatnonzero(ahead):
            cv2.line(front, pixels[piece], pixels[piece + 1], 1, thickness)
        if "forearm" in capsule.name and ahead[-1]:  # the hand at the forearm's end
            cv2.circle(front, pixels[-1], max(int(round(1.6 * capsule.radius * size)), 1), 1, -1)
    return (front & body) > 0


def _head_region(
    skeleton: Skeleton, rgb: np.ndarray, person: np.ndarray, voters: np.ndarray
) -> tuple[np.ndarray, np.ndarray] | None:
    """(W, W) weight of the back of the head and its (W, W, 3) RGB in the hair's colours, or None.

    ``rgb`` is the (W, W, 3) float photo; the hair is the median colour of the head's
    pixels above the forehead."""
    size = person.shape[0]
    joints = skeleton.joints
    head = next((c for c in skeleton.limbs if c.name == "head"), None)
    if head is None:
        return None
    centre = _to_pixels(head.start[[0, 2]], size)
    radius = head.radius * size
    eyes = _to_pixels(joints[[mp.LEFT_EYE, mp.RIGHT_EYE]][:, [0, 2]], size).mean(axis=0)
    mouth = _to_pixels(joints[[mp.MOUTH_LEFT, mp.MOUTH_RIGHT]][:, [0, 2]], size).mean(axis=0)
    span = max(float(np.linalg.norm(mouth - eyes)), 2.0)  # eyes to mouth, px
    rows, cols = np.mgrid[0:size, 0:size].astype(np.float32)
    # The face: an ellipse from the eyebrows to the chin, cheek to cheek.
    face_centre = (eyes + mouth) / 2
    face = ((cols - face_centre[0]) / (1.5 * span)) ** 2 + ((rows - face_centre[1]) / (1.7 * span)) ** 2 <= 1.0
    in_head = ((cols - centre[0]) ** 2 + (rows - centre[1]) ** 2 <= (1.3 * radius) ** 2) & person
    hair_pixels = in_head & ~face & (rows < eyes[1] - 0.9 * span) & voters  # above the forehead
    if hair_pixels.sum() < 8:
        return None
    # Down to the chin (a little below the mouth), fading out over half an eyes-to-mouth span.
    chin = mouth[1] + 0.9 * span
    fade = np.clip((chin - rows) / (0.5 * span), 0.0, 1.0)
    weight = ((in_head | face) & person).astype(np.float32)
    weight = cv2.GaussianBlur(weight, (0, 0), max(0.15 * span, 1.0)) * fade
    # The hair's (or hat's, or bald head's) colour, with the strands' texture of the band of
    # hair above the forehead mirrored back and forth down the back of the head.
    colour = np.median(rgb[hair_pixels], axis=0)  # (3,)
    detail = (rgb - cv2.GaussianBlur(rgb, (0, 0), 1.5)) * hair_pixels[..., None]  # (W, W, 3)
    top = int(np.flatnonzero(hair_pixels.any(axis=1))[0])
    band = max(int(eyes[1] - 0.9 * span) - top, 2)
    phase = (np.arange(size) - top) % (2 * band)  # (W,)
    source = np.clip(top + np.minimum(phase, 2 * band - 1 - phase), 0, size - 1)  # row each row shows
    return weight, colour[None, None, :] + 0.5 * detail[source, :]
