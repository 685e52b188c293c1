"""The preprocessing step: cut-outs kept, opaque photos cut out around the person, non-people refused."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from PIL import Image

from bench.person_photos import (
    BACKGROUNDS,
    PLAIN_BACKGROUNDS,
    Composite,
    composite,
    iou,
    small_in_large,
    with_margin,
)
from tests.support.not_people import cube_cutout, texture
from tests.support.requirements import require_pose_model
from pipelines.base import PipelineInputError
from pipelines.person import cutout as cutout_module
from pipelines.person.cutout import PersonCutout, ensure_cutout

MIN_IOU = 0.90
MIN_IOU_PLAIN = 0.95


def cutout_iou(cutout: PersonCutout, photo: Composite) -> float:
    """IoU of the cut-out's alpha (> 127), placed back in the photo, with the true person."""
    crop = cutout.cut_out_photo(photo.photo)
    left, top, right, bottom = crop.box
    alpha = np.asarray(crop.image.getchannel("A")) > 127  # (bottom - top, right - left)
    height, width = photo.truth.shape
    placed = np.zeros((height + 2 * alpha.shape[0], width + 2 * alpha.shape[1]), dtype=bool)
    placed[top + alpha.shape[0] : bottom + alpha.shape[0], left + alpha.shape[1] : right + alpha.shape[1]] = alpha
    outside = placed.sum() - placed[alpha.shape[0] : -alpha.shape[0], alpha.shape[1] : -alpha.shape[1]].sum()
    assert outside == 0, "the alpha is transparent where the crop passes the photo's edge"
    return iou(placed[alpha.shape[0] : -alpha.shape[0], alpha.shape[1] : -alpha.shape[1]], photo.truth)


@pytest.mark.slow  # every sample on every background
def test_cut_out_matches_the_true_alpha_on_every_background(cutout, sample_photos):
    """Each sample over four backgrounds (JPEG q90), and 400 px tall in a 3000 x 3000 photo."""
    rows = []
    for path in sample_photos:
        person = Image.open(path).convert("RGBA")
        for layout, canvas in (("framed", with_margin(person)), ("400px-in-3000", small_in_large(person))):
            for background, make in BACKGROUNDS.items():
                photo = composite(canvas, make(*canvas.size), background)
                rows.append((path.stem, layout, background, cutout_iou(cutout, photo)))
    print("\nsample      layout         background   IoU")
    for name, layout, background, score in rows:
        print(f"{name:<11} {layout:<14} {background:<12} {score:.3f}")
    for name, layout, background, score in rows:
        assert score >= MIN_IOU, (name, layout, background, score)
        if background in PLAIN_BACKGROUNDS:
            assert score >= MIN_IOU_PLAIN, (name, layout, background, score)


def test_opaque_photo_is_cropped_around_the_person_with_a_margin(cutout, sample_photos):
    person = Image.open(sample_photos[0]).convert("RGBA")
    photo = composite(with_margin(person, 0.5), BACKGROUNDS["grey"](*with_margin(person, 0.5).size), "grey")
    crop = cutout.cut_out_photo(photo.photo)
    assert crop.image.mode == "RGBA"
    ys, xs = np.nonzero(photo.truth)
    left, top, right, bottom = crop.box
    assert left < xs.min() and top < ys.min() and right > xs.max() and bottom > ys.max()
    longer = max(xs.max() - xs.min(), ys.max() - ys.min())
    assert right - left < (xs.max() - xs.min()) + 0.4 * longer + 40  # a margin, not the whole photo
    # Colours are the photo's, unchanged.
    inside = np.asarray(photo.photo)[top:bottom, left:right]
    assert np.array_equal(np.asarray(crop.image)[..., :3], inside)
    # Stage 1 sees it as a cut-out and takes it as is.
    assert ensure_cutout(crop.image) is not None
    assert np.array_equal(np.asarray(ensure_cutout(crop.image)), np.asarray(crop.image))


def test_person_at_the_photo_edge_gets_transparent_padding(cutout, sample_photos):
    person = Image.open(sample_photos[0]).convert("RGBA")
    ys, xs = np.nonzero(np.asarray(person.getchannel("A")))
    tight = person.crop((xs.min(), ys.min(), xs.max() + 1, ys.max() + 1))  # touches all four edges
    photo = composite(tight, BACKGROUNDS["grey"](*tight.size), "grey")
    crop = cutout.cut_out_photo(photo.photo)
    left, top, right, bottom = crop.box
    assert left < 0 and top < 0 and right > tight.width and bottom > tight.height
    alpha = np.asarray(crop.image.getchannel("A"))
    assert alpha[:, : -left].max() == 0 and alpha[: -top].max() == 0
    assert iou(alpha[-top : -top + tight.height, -left : -left + tight.width] > 127, photo.truth) >= MIN_IOU_PLAIN


def test_rgba_cutout_is_kept_as_is(cutout, sample_photos):
    image = Image.open(sample_photos[0]).convert("RGBA")
    out = cutout(image)
    assert out.mode == "RGBA"
    assert np.array_equal(np.asarray(out), np.asarray(image))


def test_small_cutout_on_a_large_canvas_is_accepted(cutout, sample_photos):
    canvas = small_in_large(Image.open(sample_photos[0]).convert("RGBA"))
    assert np.array_equal(np.asarray(cutout(canvas)), np.asarray(canvas))  # not refused as "too small a fraction"


def test_opaque_rgba_is_cut_out_like_rgb(cutout, sample_photos):
    person = with_margin(Image.open(sample_photos[-1]).convert("RGBA"))
    photo = composite(person, BACKGROUNDS["gradient"](*person.size), "gradient")
    from_rgb = np.asarray(cutout(photo.photo))
    assert np.array_equal(np.asarray(cutout(photo.photo.convert("RGBA"))), from_rgb)  # alpha 255 everywhere
    # A few transparent pixels (a cropped corner) do not make a photo a cut-out.
    almost = photo.photo.convert("RGBA")
    almost.paste((0, 0, 0, 0), (0, 0, 20, 20))
    assert cutout(almost).size == Image.fromarray(from_rgb).size


@pytest.mark.parametrize("name", ["noise", "plain", "texture"])
def test_opaque_photo_without_a_person_is_refused(cutout, name):
    if name == "noise":
        image = Image.fromarray(np.random.default_rng(7).integers(0, 256, size=(600, 600, 3), dtype=np.uint8))
    elif name == "plain":
        image = Image.new("RGB", (600, 600), (90, 140, 200))
    else:
        image = texture()
    with pytest.raises(PipelineInputError) as info:
        cutout(image)
    assert info.value.code == "no_person"


def test_cutout_of_a_cube_is_refused(cutout):
    with pytest.raises(PipelineInputError) as info:
        cutout(cube_cutout())
    assert info.value.code == "no_person"


def test_all_transparent_image_is_refused(cutout):
    with pytest.raises(PipelineInputError) as info:
        cutout(Image.new("RGBA", (512, 512), (120, 30, 30, 0)))
    assert info.value.code == "no_foreground"


def test_tiny_object_is_refused_before_the_person_check(cutout):
    image = Image.new("RGBA", (768, 768), (0, 0, 0, 0))
    image.paste((200, 150, 100, 255), (380, 380, 390, 395))  # a 10 x 15 px speck
    with pytest.raises(PipelineInputError) as info:
        cutout(image)
    assert info.value.code == "no_foreground"


def test_without_mediapipe_opaque_photos_fail_clearly_and_cutouts_pass(monkeypatch, sample_photos):
    person = with_margin(Image.open(sample_photos[0]).convert("RGBA"))
    photo = composite(person, BACKGROUNDS["grey"](*person.size), "grey").photo
    from pipelines.person import pose

    monkeypatch.setattr(pose, "_POSE", None)
    monkeypatch.setitem(sys.modules, "mediapipe.python.solutions", None)  # import fails as if absent
    monkeypatch.setitem(sys.modules, "mediapipe.python.solutions.pose", None)
    assert not cutout_module.pose_model_available()
    bare = PersonCutout()
    bare.warm()  # nothing to load: no error
    with pytest.raises(PipelineInputError) as info:
        bare(photo)
    assert info.value.code == "segmenter_unavailable"
    assert bare(person) is not None  # a cut-out needs no segmenter (and gets no person check)


def test_ensure_cutout_cuts_out_opaque_photos(sample_photos):
    require_pose_model()
    person = with_margin(Image.open(sample_photos[0]).convert("RGBA"))
    photo = composite(person, BACKGROUNDS["grey"](*person.size), "grey").photo
    out = ensure_cutout(photo)
    assert out.mode == "RGBA" and (np.asarray(out.getchannel("A")) == 0).mean() > 0.1
