"""Thumbnails and previews: sizes, colour, transparency, caching on first use."""

from __future__ import annotations

import io
from pathlib import Path
from typing import IO

import pytest
from PIL import Image

from testbed import corpus
from upload_svc.derivatives import (
    cached_rendition,
    draft_request,
    render_from_original,
    render_pair,
    target_size,
)
from upload_svc.storage import ObjectNotFound
from upload_svc.storage.local import LocalStorage


def image_of(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def test_sizes_keep_the_aspect_and_never_enlarge() -> None:
    assert target_size((4000, 3000), 768) == (768, 576)
    assert target_size((3000, 4000), 320) == (240, 320)
    assert target_size((200, 100), 768) == (200, 100)
    assert target_size((10000, 1), 320) == (320, 1)


def test_draft_request_lets_the_decoder_pick_a_big_enough_scale() -> None:
    with Image.open(io.BytesIO(corpus.phone_photo(4000, 3000, noise=0, quality=70))) as image:
        image.draft("RGB", draft_request(image.size, 768))
        assert image.size == (1000, 750)
    with Image.open(io.BytesIO(corpus.phone_photo(4000, 3000, noise=0, quality=70))) as image:
        image.draft("RGB", draft_request(image.size, 320))
        assert image.size == (500, 375)


def test_render_pair_makes_jpegs_of_the_right_sizes() -> None:
    preview, thumbnail = render_pair(
        corpus.photo_pixels(1000, 750, noise=0),
        preview_long_side=768,
        thumbnail_size=320,
        quality=85,
        profile=None,
    )
    assert image_of(preview.data).size == (768, 576)
    assert image_of(thumbnail.data).size == (320, 240)
    assert image_of(thumbnail.data).format == "JPEG"
    assert (preview.key_name, thumbnail.key_name) == ("preview-768.jpg", "thumbnail-320.jpg")


def test_transparency_is_laid_over_white() -> None:
    image = Image.new("RGBA", (100, 50), (0, 0, 0, 0))
    image.paste((255, 0, 0, 255), (50, 0, 100, 50))
    preview, _ = render_pair(
        image, preview_long_side=768, thumbnail_size=32, quality=90, profile=None
    )
    rendered = image_of(preview.data)
    assert corpus.close_colour(rendered.getpixel((10, 25)), (255, 255, 255), 8)
    assert corpus.close_colour(rendered.getpixel((90, 25)), (255, 0, 0), 20)


def test_an_icc_tagged_image_renders_in_srgb_without_a_profile() -> None:
    preview, _ = render_pair(
        corpus.upright_marker(),
        preview_long_side=768,
        thumbnail_size=32,
        quality=95,
        profile=corpus.srgb_icc(),
    )
    rendered = image_of(preview.data)
    assert "icc_profile" not in rendered.info
    assert all(
        corpus.close_colour(colour, corpus.QUADRANTS[name])
        for name, colour in corpus.quadrant_colours(rendered).items()
    )


@pytest.mark.parametrize(
    "original",
    [
        pytest.param(lambda: corpus.phone_photo(2000, 1500, noise=10), id="jpeg"),
        pytest.param(lambda: corpus.encoded(corpus.upright_marker(), "PNG"), id="png"),
        pytest.param(corpus.animated_webp, id="animated webp"),
        pytest.param(corpus.png16_rgb, id="16-bit png"),
        pytest.param(corpus.cmyk_jpeg, id="cmyk"),
    ],
)
def test_render_from_a_stored_original(original: object) -> None:
    data = render_from_original(io.BytesIO(original()), "preview", 512, 85)  # type: ignore[operator]
    image = image_of(data)
    assert image.format == "JPEG"
    assert image.mode in ("RGB", "L")
    assert max(image.size) <= 512


def test_renditions_are_made_once_then_read_from_storage(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    storage.put(
        "u1/original", io.BytesIO(corpus.phone_photo(900, 600, noise=5)), content_type="image/jpeg"
    )
    calls: list[int] = []

    def counting(source: IO[bytes], name: str, long_side: int, quality: int) -> bytes:
        calls.append(long_side)
        return render_from_original(source, name, long_side, quality)

    first = cached_rendition(storage, "u1", "preview", 400, quality=85, render=counting)
    second = cached_rendition(storage, "u1", "preview", 400, quality=85, render=counting)
    assert first == second
    assert calls == [400]
    assert storage.exists("u1/preview-400.jpg")
    assert image_of(first).size == (400, 267)


def test_a_rendition_of_a_deleted_upload_is_not_left_behind(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    storage.put("u2/original", io.BytesIO(corpus.small_jpeg()), content_type="image/jpeg")

    def deleting(source: IO[bytes], name: str, long_side: int, quality: int) -> bytes:
        data = render_from_original(source, name, long_side, quality)
        storage.delete("u2/original")  # a DELETE arrives while the rendition is made
        return data

    with pytest.raises(ObjectNotFound):
        cached_rendition(storage, "u2", "thumbnail", 100, quality=85, render=deleting)
    assert not storage.exists("u2/thumbnail-100.jpg")
