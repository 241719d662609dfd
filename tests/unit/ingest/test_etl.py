"""ETL on each kind of image the issue lists (bytes made here; no network)."""

from __future__ import annotations

import pytest

from ingest.etl import prepare
from ingest.exceptions import BadInput
from tests.integration.ingest_support import images

MAX = 50_000_000


@pytest.mark.parametrize(
    ("data", "mime", "size"),
    [
        (images.jpeg(1), "image/jpeg", (320, 240)),
        (images.animated_gif(), "image/gif", (64, 48)),
        (images.cmyk_jpeg(), "image/jpeg", (320, 240)),
        (images.png_16bit(), "image/png", (96, 64)),
        (images.png_alpha(), "image/png", (320, 240)),
        (images.exif_rotated_jpeg(), "image/jpeg", (240, 320)),
        (images.webp(), "image/webp", (320, 240)),
        (images.tiff(), "image/tiff", (320, 240)),
    ],
    ids=["jpeg", "gif", "cmyk", "png16", "alpha", "exif", "webp", "tiff"],
)
def test_accepted_images_become_rgb(data, mime, size):
    p = prepare(data, MAX)
    assert (p.mime, (p.width, p.height), p.image.mode) == (mime, size, "RGB")
    assert len(p.image_id) == 64 and len(p.phash) == 16


def test_first_frame_of_an_animation_alpha_on_white_and_16_bit_scaled():
    assert prepare(images.animated_gif(), MAX).image.getpixel((1, 1)) == (220, 20, 20)
    lo, hi = prepare(images.png_16bit(), MAX).image.getextrema()[0]
    assert lo == 0 and hi == 255  # scaled, not clipped to white


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty body"),
        (images.jpeg(1)[:3000], "truncated"),
        (images.png()[:300], "PNG"),
        (images.HTML, "not an image"),
        (images.SVG, "not an image"),
        (images.png_bomb_header(), "decompression bomb"),
        (images.png_bomb_header(9000, 9000), "decompression bomb"),  # 81 Mpx: over our 50 Mpx bound
    ],
    ids=["empty", "trunc-jpeg", "trunc-png", "html", "svg", "bomb", "over-bound"],
)
def test_refused_inputs_say_why(data, reason):
    with pytest.raises(BadInput) as err:
        prepare(data, MAX)
    assert err.value.stage == "etl" and reason in err.value.reason
