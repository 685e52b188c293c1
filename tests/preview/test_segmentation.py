"""Person segmentation before stage 1: cut-outs kept, opaque photos segmented, bad input refused."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from PIL import Image

from pipelines import segmentation
from pipelines.base import PipelineInputError
from pipelines.segmentation import ensure_person_rgba
from preview.conftest import require_segmenter


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def test_rgba_cutout_is_kept_as_is(sample_photos):
    image = Image.open(sample_photos[0]).convert("RGBA")
    out = ensure_person_rgba(image)
    assert out.mode == "RGBA"
    assert np.array_equal(np.asarray(out), np.asarray(image))


def test_all_transparent_image_is_refused():
    image = Image.new("RGBA", (512, 512), (120, 30, 30, 0))
    with pytest.raises(PipelineInputError) as info:
        ensure_person_rgba(image)
    assert info.value.code == "no_foreground"


def test_tiny_object_is_refused():
    image = Image.new("RGBA", (768, 768), (0, 0, 0, 0))
    image.paste((200, 150, 100, 255), (380, 380, 390, 395))  # a 10 x 15 px speck
    with pytest.raises(PipelineInputError) as info:
        ensure_person_rgba(image)
    assert info.value.code == "no_foreground"


def test_small_cutout_on_a_large_canvas_is_accepted():
    image = Image.new("RGBA", (3000, 3000), (0, 0, 0, 0))
    image.paste((90, 60, 40, 255), (1400, 1200, 1480, 1500))  # 80 x 300 px: 0.3 % of the canvas
    out = ensure_person_rgba(image)  # kept, not refused as "too small a fraction"
    assert np.array_equal(np.asarray(out), np.asarray(image))


def test_opaque_photo_is_segmented_to_the_person(rgb_photo):
    require_segmenter()
    photo, truth = rgb_photo
    out = ensure_person_rgba(photo)
    assert out.mode == "RGBA" and out.size == photo.size
    mask = np.asarray(out.getchannel("A")) > 0
    assert _iou(mask, truth) >= 0.85
    # The person's colours are the photo's.
    assert np.array_equal(np.asarray(out.convert("RGB")), np.asarray(photo))


def test_opaque_rgba_is_segmented_like_rgb(rgb_photo):
    require_segmenter()
    photo, truth = rgb_photo
    out = ensure_person_rgba(photo.convert("RGBA"))  # alpha 255 everywhere: no cut-out
    assert _iou(np.asarray(out.getchannel("A")) > 0, truth) >= 0.85
    # A few transparent pixels (a cropped corner) do not make a photo a cut-out.
    almost = photo.convert("RGBA")
    almost.paste((0, 0, 0, 0), (0, 0, 20, 20))
    out = ensure_person_rgba(almost)
    assert _iou(np.asarray(out.getchannel("A")) > 0, truth) >= 0.85


@pytest.mark.parametrize("kind", ["noise", "plain"])
def test_photo_without_a_person_is_refused(kind):
    require_segmenter()
    rng = np.random.default_rng(7)
    if kind == "noise":
        pixels = rng.integers(0, 256, size=(600, 600, 3), dtype=np.uint8)
    else:
        pixels = np.full((600, 600, 3), (90, 140, 200), dtype=np.uint8)
    with pytest.raises(PipelineInputError) as info:
        ensure_person_rgba(Image.fromarray(pixels, mode="RGB"))
    assert info.value.code == "no_foreground"


def test_opaque_photo_without_segmenter_fails_clearly(monkeypatch, rgb_photo):
    photo, _ = rgb_photo
    monkeypatch.setattr(segmentation, "_SEGMENTER", None)
    monkeypatch.setitem(sys.modules, "mediapipe.python.solutions", None)  # import fails as if absent
    with pytest.raises(PipelineInputError) as info:
        ensure_person_rgba(photo)
    assert info.value.code == "segmenter_unavailable"
    # A cut-out needs no segmenter.
    cutout = Image.new("RGBA", (400, 400), (0, 0, 0, 0))
    cutout.paste((10, 20, 30, 255), (100, 50, 300, 380))
    assert ensure_person_rgba(cutout).size == (400, 400)
