"""The ONNX segmentation backend: rembg's conventions, through the cut-out and the pipeline loader."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from bench.person_photos import composite, iou, with_margin
from tests.support.not_people import cube_cutout
from tests.support.requirements import require_pose_model
from tests.support.tiny_onnx import GREEN_SCREEN, build_rembg_model
from pipelines.base import PipelineInputError
from pipelines.person.cutout import PersonCutout
from pipelines.person.rembg_onnx import RembgOnnxSegmenter, family_of
from pipelines.person.segmenters import PoseMaskSegmenter, load_segmenter

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")


def green_screen_photo(sample: Image.Image):
    person = with_margin(sample.convert("RGBA"))
    background = np.empty((person.height, person.width, 3), dtype=np.uint8)
    background[:] = GREEN_SCREEN
    return composite(person, background, "green")


def test_u2net_convention_first_output_min_max_normalised(tmp_path, sample_photos):
    model = build_rembg_model(tmp_path / "u2net.onnx")
    segmenter = RembgOnnxSegmenter(model)
    assert segmenter.size == 320 and segmenter.input_name == "input.1"
    assert segmenter.providers == ["CPUExecutionProvider"]
    photo = green_screen_photo(Image.open(sample_photos[0]))
    probability = segmenter.segment(np.asarray(photo.photo))
    assert probability.shape == photo.truth.shape and probability.dtype == np.float32
    assert probability.min() == pytest.approx(0.0, abs=0.01) and probability.max() == pytest.approx(1.0, abs=0.01)
    assert iou(probability > 0.5, photo.truth) >= 0.9  # the first output, not the inverted decoys


def test_birefnet_convention_sigmoid_and_its_own_size(tmp_path, sample_photos):
    u2net = RembgOnnxSegmenter(build_rembg_model(tmp_path / "u2net.onnx", size=None))
    birefnet = RembgOnnxSegmenter(build_rembg_model(tmp_path / "BiRefNet-general.onnx", size=None, sigmoid=False))
    assert (u2net.size, birefnet.size) == (320, 1024)  # dynamic models take their family's size
    assert family_of(tmp_path / "isnet-general-use.onnx").mean == (0.5, 0.5, 0.5)
    photo = green_screen_photo(Image.open(sample_photos[1]))
    assert iou(birefnet.segment(np.asarray(photo.photo)) > 0.5, photo.truth) >= 0.9


def test_cutout_with_the_onnx_backend(tmp_path, sample_photos):
    require_pose_model()
    segmenter = load_segmenter("onnx", model="u2net.onnx", weights_dir=build_rembg_model(tmp_path / "u2net.onnx").parent)
    assert isinstance(segmenter, RembgOnnxSegmenter)
    cutout = PersonCutout(segmenter)
    photo = green_screen_photo(Image.open(sample_photos[2]))
    crop = cutout.cut_out_photo(photo.photo)
    left, top, right, bottom = crop.box
    alpha = np.asarray(crop.image.getchannel("A")) > 127
    truth = photo.truth[max(top, 0) : bottom, max(left, 0) : right]
    assert iou(alpha[max(-top, 0) :, max(-left, 0) :][: truth.shape[0], : truth.shape[1]], truth) >= 0.9
    with pytest.raises(PipelineInputError) as info:  # the person check does not depend on the backend
        cutout(cube_cutout())
    assert info.value.code == "no_person"


def test_load_segmenter_refuses_bad_settings(tmp_path):
    assert isinstance(load_segmenter("mediapipe"), PoseMaskSegmenter)
    with pytest.raises(ValueError, match="unknown segmenter"):
        load_segmenter("rembg")
    with pytest.raises(ValueError, match="does not exist"):
        load_segmenter("onnx", model="u2net.onnx", weights_dir=tmp_path)
    with pytest.raises(ValueError, match="no weights directory"):
        load_segmenter("onnx", model="u2net.onnx")


def test_worker_pipelines_carry_the_configured_cutout(tmp_path):
    require_pose_model()
    from pipelines.registry import load_pipelines

    model = build_rembg_model(tmp_path / "u2net_human_seg.onnx")
    pipelines = load_pipelines("preview", segmenter="onnx", segmenter_model=model)
    assert isinstance(pipelines.preprocess.segmenter, RembgOnnxSegmenter)
    assert isinstance(load_pipelines("preview").preprocess.segmenter, PoseMaskSegmenter)
