"""Request validation without servers: options, image checks, the URL policy."""

from __future__ import annotations

import io
import ipaddress

import pytest
from PIL import Image

from api.image_checks import check_image
from api.submission import parse_options
from shared.errors import (
    EmptyUploadError,
    InvalidOptionsError,
    ImageTooLargeError,
    InvalidImageError,
    NoForegroundError,
    UnsupportedFormatError,
    UrlRefusedError,
)
from shared.options import GenerationOptions, option_bounds
from shared.settings import ApiSettings
from shared.url_policy import check_addresses, is_public_address, parse_target
from pipelines.base import MultiviewOutput, Stage1Options, Stage2Options
from worker.pipeline_options import pipeline_options

SETTINGS = ApiSettings(max_upload_bytes=2_000_000, max_pixels=1_000_000, min_side=64)


def encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def test_option_defaults_are_the_official_models():
    options = GenerationOptions()
    assert (options.seed, options.stage1_steps, options.guidance_scale) == (43, 50, 3.0)
    assert (options.stage2_steps, options.cfg_strength, options.texture_size, options.simplify) == (25, 5.0, 1024, 0.7)
    # The one mapping onto the pipelines' knobs: the API's defaults are the pipelines' defaults.
    assert pipeline_options(options) == (Stage1Options(), Stage2Options())


def test_option_bounds_are_published_for_every_option():
    bounds = option_bounds()
    assert set(bounds) == set(GenerationOptions.model_fields)
    assert bounds["stage1_steps"]["minimum"] == 1 and bounds["stage1_steps"]["maximum"] == 200
    assert bounds["texture_size"]["allowed"] == [512, 1024, 2048]
    assert bounds["formats"]["allowed"] == ["glb", "usdz", "obj"] and bounds["formats"]["default"] == ["glb"]
    numeric = {
        name: b for name, b in bounds.items() if isinstance(b["default"], int | float) and not isinstance(b["default"], bool)
    }
    assert set(numeric) >= {"seed", "stage1_steps", "guidance_scale", "stage2_steps", "cfg_strength", "texture_size", "simplify"}
    for name, bound in numeric.items():
        assert bound["minimum"] <= bound["default"] <= bound["maximum"], name


@pytest.mark.parametrize(
    "raw",
    ['{"stage1_steps": true}', '{"seed": "7"}', '{"guidance_scale": "3.0"}', '{"stage1_only": 1}',
     '{"texture_size": 1024.0}', '{"simplify": false}', '{"texture_size": 256}', '{"steps": 3}', "[1]"],
)
def test_options_are_validated_strictly(raw):
    with pytest.raises(InvalidOptionsError):
        parse_options(raw)


def test_options_accept_json_numbers_of_either_kind_for_floats():
    assert parse_options('{"guidance_scale": 3, "seed": 7}') == GenerationOptions(guidance_scale=3.0, seed=7)
    assert parse_options({"simplify": 0.5}).simplify == 0.5 and parse_options(None) == GenerationOptions()


def test_the_pipelines_accept_every_option_the_api_accepts():
    from pipelines.preview.stage2 import PreviewMeshPipeline

    stage2 = PreviewMeshPipeline()
    views = MultiviewOutput(source=None, input_image=None, colors=[], normals=[], coords=None)
    bounds = option_bounds()
    for texture_size in bounds["texture_size"]["allowed"]:
        for simplify in (bounds["simplify"]["minimum"], bounds["simplify"]["maximum"]):
            options = GenerationOptions(texture_size=texture_size, simplify=simplify)
            stage2.check_inputs(views, pipeline_options(options)[1].texture_size, options.simplify)


def test_plain_png_is_kept_byte_for_byte():
    data = encode(Image.new("RGBA", (128, 96), (10, 20, 30, 255)), "PNG")
    checked = check_image(data, SETTINGS)
    assert checked.png == data and checked.mode == "RGBA" and (checked.width, checked.height) == (128, 96)


def test_jpeg_exif_orientation_is_applied():
    image = Image.new("RGB", (200, 100), "white")
    image.paste((255, 0, 0), (0, 0, 20, 100))  # red stripe on the left
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    checked = check_image(encode(image, "JPEG", exif=exif.tobytes(), quality=95), SETTINGS)
    upright = Image.open(io.BytesIO(checked.png))
    assert upright.size == (100, 200) and checked.mode == "RGB"
    assert upright.getpixel((50, 5))[0] > 200 and upright.getpixel((50, 195))[1] > 200  # stripe now on top


def test_webp_with_alpha_becomes_rgba_png():
    image = Image.new("RGBA", (100, 100), (0, 0, 0, 0))
    image.paste((0, 255, 0, 255), (30, 30, 70, 70))
    checked = check_image(encode(image, "WEBP", lossless=True), SETTINGS)
    assert checked.mode == "RGBA" and Image.open(io.BytesIO(checked.png)).getchannel("A").getbbox() == (30, 30, 70, 70)


@pytest.mark.parametrize(
    "data, error",
    [
        (b"", EmptyUploadError),
        (b"%PDF-1.4 not an image", InvalidImageError),
        (encode(Image.new("RGB", (100, 100)), "BMP"), UnsupportedFormatError),
        (encode(Image.new("RGB", (100, 100)), "TIFF"), UnsupportedFormatError),
        (encode(Image.new("RGB", (2000, 2000)), "PNG"), ImageTooLargeError),
        (encode(Image.new("RGB", (32, 300)), "PNG"), InvalidImageError),
        (encode(Image.new("RGBA", (100, 100)), "PNG"), NoForegroundError),
        (encode(Image.new("RGB", (300, 300), "blue"), "JPEG")[:-200], InvalidImageError),
    ],
    ids=["empty", "pdf", "bmp", "tiff", "over-pixel-cap", "too-small", "transparent", "truncated-jpeg"],
)
def test_bad_images_are_refused_with_their_code(data, error):
    with pytest.raises(error) as caught:
        check_image(data, SETTINGS)
    assert caught.value.message


@pytest.mark.parametrize(
    "address, public",
    [
        ("8.8.8.8", True),
        ("2606:4700:4700::1111", True),
        ("127.0.0.1", False),
        ("10.1.2.3", False),
        ("172.16.0.1", False),
        ("192.168.1.1", False),
        ("169.254.169.254", False),
        ("100.64.0.1", False),
        ("100.100.100.200", False),
        ("0.0.0.0", False),
        ("::1", False),
        ("fe80::1", False),
        ("fd00:ec2::254", False),
        ("::ffff:127.0.0.1", False),
        ("224.0.0.1", False),
    ],
)
def test_public_address_classification(address, public):
    assert is_public_address(ipaddress.ip_address(address)) is public


@pytest.mark.parametrize(
    "url", ["ftp://example.com/a.png", "file:///etc/passwd", "http://user:pw@example.com/a.png", "http:///a.png", "http://example.com:99999/"]
)
def test_unusable_urls_are_refused(url):
    with pytest.raises(UrlRefusedError):
        parse_target(url)


def test_allowlist_admits_named_hosts_and_networks_only():
    target = parse_target("http://cache.internal/a.png")
    infos = [(2, 1, 6, "", ("10.0.0.7", 80))]
    with pytest.raises(UrlRefusedError):
        check_addresses(target, infos, [])
    assert str(check_addresses(target, infos, ["cache.internal"])) == "10.0.0.7"
    assert str(check_addresses(target, infos, ["10.0.0.0/24"])) == "10.0.0.7"
    with pytest.raises(UrlRefusedError):
        check_addresses(target, infos + [(2, 1, 6, "", ("169.254.169.254", 80))], ["10.0.0.0/24"])
