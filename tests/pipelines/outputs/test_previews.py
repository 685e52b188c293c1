"""Thumbnail and turntable of a model: sizes, formats, and that they show the model as it is."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from pipelines.outputs import model_outputs
from pipelines.outputs.render import FRONT_THREE_QUARTER, ModelRenderer, OrbitView
from tests.support.output_checks import decode_mp4, iou, pixel_of, reference_silhouette
from tests.pipelines.outputs.figure import QUADRANTS


@pytest.fixture(scope="module")
def outputs(figure_glb):
    return model_outputs(figure_glb).files


def test_thumbnail_is_512_rgba_on_a_transparent_background(outputs):
    image = Image.open(io.BytesIO(outputs["thumbnail.png"]))
    assert (image.format, image.mode, image.size) == ("PNG", "RGBA", (512, 512))
    alpha = np.asarray(image)[..., 3]
    assert alpha[0, 0] == alpha[-1, -1] == 0
    assert 0.05 < (alpha > 0).mean() < 0.6
    assert ((alpha > 0) & (alpha < 255)).any(), "edges are anti-aliased"


def test_thumbnail_silhouette_matches_an_independent_render_of_the_front_three_quarter(outputs, figure_glb):
    alpha = np.asarray(Image.open(io.BytesIO(outputs["thumbnail.png"])))[..., 3]
    reference = reference_silhouette(figure_glb, FRONT_THREE_QUARTER, 512)
    assert iou(alpha >= 128, reference) > 0.97
    # The raised arm is on the subject's left (+x): from the front three-quarter it is on the image's right.
    columns = np.nonzero((alpha >= 128).any(axis=0))[0]
    assert iou(alpha >= 128, reference[:, ::-1]) < 0.9, "a mirrored render would not match"
    assert columns.min() > 0 and columns.max() < 511, "the whole model is in frame"


def test_front_view_shows_each_texture_quadrant_where_the_uvs_put_it(figure_glb):
    from pipelines.outputs.model import load_glb

    front = OrbitView(azimuth=0.0)
    [frame] = ModelRenderer().render(load_glb(figure_glb), [front], 256)
    # glTF frame: x right, y up, the front faces +z (the boxes' front faces are at z = 0.08).
    points = {"top_left": (-0.1, 0.05, 0.08), "bottom_left": (-0.1, -0.4, 0.08),
              "bottom_right": (0.1, -0.4, 0.08), "top_right": (0.2, 0.25, 0.04)}
    for quadrant, point in points.items():
        row, column = pixel_of(figure_glb, front, 256, point)
        seen = frame[row, column, :3].astype(float)
        expected = np.asarray(QUADRANTS[quadrant], dtype=float)
        cosine = seen @ expected / (np.linalg.norm(seen) * np.linalg.norm(expected))
        assert cosine > 0.97, (quadrant, seen)


def test_turntable_mp4_is_h264_512_with_one_turn_in_5_seconds(outputs, figure_glb):
    video = decode_mp4(outputs["turntable.mp4"])
    assert (video.codec, video.size) == ("h264", (512, 512))
    assert 4.0 <= video.seconds <= 6.0
    frames = video.frames
    assert len(frames) == 120
    # Frame i is the model seen from i * 3 degrees, on white.
    for index in (0, 30, 75):
        covered = (frames[index] < 235).any(axis=2)
        reference = reference_silhouette(figure_glb, OrbitView(azimuth=3.0 * index, elevation=8.0), 512)
        assert iou(covered, reference) > 0.93, index


def test_turntable_webp_is_animated_with_transparency(outputs, figure_glb):
    image = Image.open(io.BytesIO(outputs["turntable.webp"]))
    assert image.format == "WEBP" and image.is_animated
    assert image.n_frames == 60 and image.size == (512, 512)
    assert image.info["loop"] == 0
    image.seek(10)
    image.load()
    assert image.info["duration"] == 83  # ms: 12 frames a second, 5 s a turn
    alpha = np.asarray(image.convert("RGBA"))[..., 3]
    reference = reference_silhouette(figure_glb, OrbitView(azimuth=60.0, elevation=8.0), 512)
    assert iou(alpha >= 128, reference) > 0.95


def test_outputs_are_the_previews_unless_formats_ask_for_more(outputs):
    assert set(outputs) == {"thumbnail.png", "turntable.mp4", "turntable.webp"}
