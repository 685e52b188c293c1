"""Property tests of the upload validator: arbitrary bytes never crash it.

Whatever the bytes, ``check_image`` either returns a normalised PNG or raises
one of the service's input errors (a 4xx with a stable code) — never another
exception, which would surface as a 500.
"""

from __future__ import annotations

import io

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from api.image_checks import check_image
from shared.errors import InvalidInputError
from shared.settings import ApiSettings

LIMITS = ApiSettings(max_upload_bytes=256 * 1024, max_pixels=512 * 512, min_side=8)


def _encoded(width: int, height: int, mode: str, fmt: str, seed: int) -> bytes:
    import random

    rng = random.Random(seed)
    image = Image.frombytes(mode, (width, height), bytes(rng.getrandbits(8) for _ in range(width * height * len(mode))))
    buffer = io.BytesIO()
    if fmt == "JPEG" and mode == "RGBA":
        image = image.convert("RGB")
    image.save(buffer, format=fmt)
    return buffer.getvalue()


valid_images = st.builds(
    _encoded,
    width=st.integers(1, 40),
    height=st.integers(1, 40),
    mode=st.sampled_from(["RGB", "RGBA", "L"]),
    fmt=st.sampled_from(["PNG", "JPEG", "WEBP"]),
    seed=st.integers(0, 2**16),
)


@st.composite
def mutated_images(draw) -> bytes:
    data = bytearray(draw(valid_images))
    for _ in range(draw(st.integers(1, 8))):
        action = draw(st.sampled_from(["flip", "truncate", "insert"]))
        position = draw(st.integers(0, max(len(data) - 1, 0)))
        if action == "flip" and data:
            data[position] ^= draw(st.integers(1, 255))
        elif action == "truncate":
            del data[position:]
        else:
            data[position:position] = draw(st.binary(min_size=1, max_size=16))
    return bytes(data)


def _check_never_crashes(data: bytes) -> None:
    try:
        checked = check_image(data, LIMITS)
    except InvalidInputError as exc:
        assert exc.code and exc.message
        return
    assert checked.png.startswith(b"\x89PNG\r\n\x1a\n")
    assert checked.width * checked.height <= LIMITS.max_pixels


@given(st.binary(max_size=4096))
@settings(max_examples=300, deadline=None)
def test_arbitrary_bytes_never_crash_the_validator(data):
    _check_never_crashes(data)


@given(st.one_of(valid_images, mutated_images()))
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_real_and_corrupted_images_never_crash_the_validator(data):
    _check_never_crashes(data)
