"""Intake on its own: what is accepted, how it is cleaned, what is refused and why."""

from __future__ import annotations

import functools
import io
import os
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from PIL import Image, ImageChops, ImageOps, ImageStat, JpegImagePlugin

from chassis.errors import ApiError
from testbed import corpus
from testbed.resources import reset_peak, status_kib
from upload_svc import intake
from upload_svc.intake import AcceptedImage, IntakeLimits, accepted_image, renditions

LIMITS = IntakeLimits()


@contextmanager
def accept(data: bytes, limits: IntakeLimits = LIMITS) -> Iterator[AcceptedImage]:
    with accepted_image(io.BytesIO(data), len(data), limits) as accepted:
        yield accepted


def stored_bytes(accepted: AcceptedImage) -> bytes:
    accepted.file.seek(0)
    return accepted.file.read()


def refused(data: bytes, limits: IntakeLimits = LIMITS) -> ApiError:
    with pytest.raises(ApiError) as caught, accept(data, limits):
        pass
    return caught.value


def peak_rss_growth(action: object) -> int:
    """Bytes the process's peak resident memory grew by while ``action`` ran (Linux)."""
    pid = os.getpid()
    reset_peak(pid)
    before = status_kib(pid, "VmRSS")
    action()  # type: ignore[operator]
    return (status_kib(pid, "VmHWM") - before) * 1024


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_is_applied_to_the_pixels(orientation: int) -> None:
    with accept(corpus.oriented(orientation)) as accepted:
        assert (accepted.width, accepted.height) == (90, 60)
        # 90x60 is no multiple of the 16 px MCU, and trimming the ragged strip would crop
        # a picture this small visibly: only the transpose (5), which moves no partial
        # edge, is turned losslessly; the other orientations are re-encoded, exactly sized.
        assert accepted.transformed == (orientation == 5)
        assert accepted.reencoded == (orientation not in (1, 5))
        data = stored_bytes(accepted)
        preview, thumbnail = renditions(accepted, LIMITS)
    with Image.open(io.BytesIO(data)) as stored:
        assert stored.size == (90, 60)
        assert not stored.getexif()
        colours = corpus.quadrant_colours(stored)
    for name, expected in corpus.QUADRANTS.items():
        assert corpus.close_colour(colours[name], expected), (orientation, name, colours)
    for rendition in (preview, thumbnail):
        with Image.open(io.BytesIO(rendition.data)) as image:
            rendered = corpus.quadrant_colours(image)
        assert all(corpus.close_colour(rendered[n], c) for n, c in corpus.QUADRANTS.items())


def test_rotated_jpeg_is_reencoded_at_its_own_quality() -> None:
    original = corpus.oriented(6)
    with accept(original) as accepted:
        data = stored_bytes(accepted)
    with Image.open(io.BytesIO(original)) as source, Image.open(io.BytesIO(data)) as stored:
        assert stored.quantization == source.quantization
        assert JpegImagePlugin.get_sampling(stored) == JpegImagePlugin.get_sampling(source)


def test_gps_and_device_details_are_gone_but_capture_time_is_kept() -> None:
    photo = corpus.phone_photo(
        640, 480, exif=corpus.private_exif(offset="+02:00").tobytes(), noise=10
    )
    with accept(photo) as accepted:
        assert accepted.captured_at == "2024-05-17T14:03:22+02:00"
        data = stored_bytes(accepted)
    with Image.open(io.BytesIO(data)) as stored:
        assert not stored.getexif()
        assert not stored.getexif().get_ifd(0x8825)
    assert corpus.SERIAL.encode() not in data
    assert b"Pixelphone" not in data


def test_capture_time_without_offset_is_local_time() -> None:
    with accept(corpus.phone_photo(64, 48, exif=corpus.private_exif().tobytes())) as accepted:
        assert accepted.captured_at == "2024-05-17T14:03:22"
    with accept(corpus.phone_photo(64, 48)) as accepted:
        assert accepted.captured_at is None
    nonsense = corpus.private_exif(captured="0000:00:00 00:00:00").tobytes()
    with accept(corpus.phone_photo(64, 48, exif=nonsense)) as accepted:
        assert accepted.captured_at is None


def test_stripped_jpeg_is_the_same_size_class_and_hash_matches() -> None:
    photo = corpus.phone_photo(800, 600, exif=corpus.private_exif().tobytes(), noise=30)
    with accept(photo) as accepted:
        data = stored_bytes(accepted)
        assert not accepted.reencoded
        assert accepted.size == len(data)
        import hashlib

        assert accepted.sha256 == hashlib.sha256(data).hexdigest()
    assert 0 < len(photo) - len(data) < 2000  # only the metadata went


def test_a_12_megapixel_jpeg_is_never_decoded_at_full_size() -> None:
    photo = corpus.phone_photo(4000, 3000, noise=20, quality=80)
    with accept(photo) as accepted:
        assert (accepted.width, accepted.height) == (4000, 3000)
        assert accepted.decoded.size == (1000, 750)  # draft mode: 1/4 scale
        preview, thumbnail = renditions(accepted, LIMITS)
    with Image.open(io.BytesIO(preview.data)) as image:
        assert image.size == (768, 576)
    with Image.open(io.BytesIO(thumbnail.data)) as image:
        assert image.size == (320, 240)


def test_pixel_bomb_is_refused_before_decoding() -> None:
    bomb = corpus.pixel_bomb_png()
    assert len(bomb) < 100_000
    error: list[ApiError] = []
    growth = peak_rss_growth(lambda: error.append(refused(bomb)))
    assert (error[0].status, error[0].code) == (422, "image_too_large")
    assert growth < 20 * 1024 * 1024, "a 56-megapixel decode would need 56 MB"


def test_pixel_limit_is_configurable() -> None:
    small_limits = IntakeLimits(max_pixels=1000)
    error = refused(corpus.phone_photo(64, 48), small_limits)
    assert (error.status, error.code) == (422, "image_too_large")
    with accept(corpus.phone_photo(30, 30)) as accepted:
        assert accepted.width == 30


def test_animation_limits() -> None:
    error = refused(corpus.animated_webp(frames=5), IntakeLimits(max_frames=4))
    assert error.code == "image_too_large"
    error = refused(corpus.animated_webp(frames=5), IntakeLimits(max_animation_pixels=64 * 48 * 4))
    assert error.code == "image_too_large"


def test_animated_webp_stays_animated_without_metadata() -> None:
    with accept(corpus.animated_webp(frames=4)) as accepted:
        assert accepted.frames == 4
        assert accepted.content_type == "image/webp"
        assert not accepted.reencoded
        data = stored_bytes(accepted)
        preview, _ = renditions(accepted, LIMITS)
    with Image.open(io.BytesIO(data)) as stored:
        assert stored.n_frames == 4
        assert not stored.getexif()
    with Image.open(io.BytesIO(preview.data)) as first:
        assert corpus.close_colour(first.getpixel((5, 5)), (0, 100, 200))


def test_cmyk_jpeg_stays_cmyk_and_renders_in_rgb() -> None:
    with accept(corpus.cmyk_jpeg()) as accepted:
        data = stored_bytes(accepted)
        preview, thumbnail = renditions(accepted, LIMITS)
    with Image.open(io.BytesIO(data)) as stored:
        assert stored.mode == "CMYK"
    for rendition in (preview, thumbnail):
        with Image.open(io.BytesIO(rendition.data)) as image:
            assert image.mode == "RGB"
            assert corpus.close_colour(image.getpixel((10, 10)), (255, 0, 0))


def test_rotated_cmyk_jpeg_keeps_its_inks() -> None:
    sensor = Image.new("CMYK", (60, 90), (0, 255, 255, 0))  # red ink, stored sideways
    sensor.paste((255, 0, 0, 0), (0, 0, 60, 45))  # cyan on the half that becomes the right
    out = io.BytesIO()
    sensor.save(out, "JPEG", quality=95, exif=corpus.private_exif(orientation=6).tobytes())
    with accept(out.getvalue()) as accepted:
        assert (accepted.width, accepted.height) == (90, 60)
        data = stored_bytes(accepted)
    with Image.open(io.BytesIO(data)) as stored:
        assert stored.mode == "CMYK"
        rgb = stored.convert("RGB")
        assert corpus.close_colour(rgb.getpixel((20, 30)), (255, 0, 0))
        assert corpus.close_colour(rgb.getpixel((70, 30)), (0, 255, 255))


def test_16_bit_png_is_kept_at_16_bits_and_rendered_without_clipping() -> None:
    with accept(corpus.png16_grey(value=40000)) as accepted:
        data = stored_bytes(accepted)
        preview, _ = renditions(accepted, LIMITS)
    assert data[24] == 16
    with Image.open(io.BytesIO(preview.data)) as image:
        assert abs(image.convert("L").getpixel((5, 5)) - 40000 // 256) <= 2
    with accept(corpus.png16_rgb()) as accepted:
        assert stored_bytes(accepted)[24] == 16
        assert accepted.content_type == "image/png"


def test_heic_from_a_phone_becomes_an_upright_jpeg_without_metadata() -> None:
    with accept(corpus.phone_heic(orientation=6)) as accepted:
        assert accepted.content_type == "image/jpeg"
        assert accepted.source_content_type == "image/heic"
        assert (accepted.width, accepted.height) == (160, 120)
        assert accepted.captured_at == "2024-05-17T14:03:22-07:00"
        data = stored_bytes(accepted)
    with Image.open(io.BytesIO(data)) as stored:
        assert stored.format == "JPEG"
        assert not stored.getexif()
        assert "xmp" not in stored.info
        colours = corpus.quadrant_colours(stored)
    assert all(corpus.close_colour(colours[n], c) for n, c in corpus.QUADRANTS.items())
    assert b"iPhone" not in data
    assert corpus.SERIAL.encode() not in data


def test_heic_with_alpha_becomes_png() -> None:
    with accept(corpus.phone_heic(alpha=True)) as accepted:
        assert accepted.content_type == "image/png"
        with Image.open(accepted.file) as stored:
            assert "A" in stored.getbands()


def test_mpo_keeps_only_the_first_picture() -> None:
    with accept(corpus.mpo_with_secret_second_image()) as accepted:
        data = stored_bytes(accepted)
    with Image.open(io.BytesIO(data)) as stored:
        assert stored.format == "JPEG"
        assert getattr(stored, "n_frames", 1) == 1
    assert data.count(b"\xff\xd8") == 1


@pytest.mark.parametrize(
    ("data", "status", "code"),
    [
        (b"", 422, "invalid_image"),
        (b"hello", 415, "unsupported_media_type"),
        (b"\xff\xd8\xff" + bytes(100), 422, "invalid_image"),
        (b"\x89PNG\r\n\x1a\n" + b"garbage" * 10, 422, "invalid_image"),
    ],
)
def test_refusals(data: bytes, status: int, code: str) -> None:
    error = refused(data)
    assert (error.status, error.code) == (status, code)


# Not a multiple of the 16 px MCU either way: the ragged strip is trimmed (under 1%).
ROTATED_SIZE = (2008, 1503)


@functools.cache
def rotated_photo(orientation: int) -> bytes:
    """A phone photo stored sideways (or upside down) with GPS and device EXIF."""
    upright = corpus.photo_pixels(*ROTATED_SIZE, seed=orientation, noise=30)
    method = corpus.SENSOR_LAYOUT[orientation]
    sensor = upright if method is None else upright.transpose(method)
    out = io.BytesIO()
    exif = corpus.private_exif(orientation=orientation).tobytes()
    sensor.save(out, "JPEG", quality=88, exif=exif)
    return out.getvalue()


def transposed_table(table: list[int]) -> list[int]:
    return [table[column * 8 + row] for row in range(8) for column in range(8)]


@pytest.mark.parametrize("orientation", [3, 6, 8, 2, 7])
def test_rotated_jpeg_is_turned_upright_without_a_reencode(orientation: int) -> None:
    original = rotated_photo(orientation)
    with accept(original) as accepted:
        data = stored_bytes(accepted)
        facts = (accepted.transformed, accepted.reencoded, accepted.width, accepted.height)
    assert facts[:2] == (True, False)
    assert facts[2:] == Image.open(io.BytesIO(data)).size
    swaps = orientation in (5, 6, 7, 8)
    with Image.open(io.BytesIO(original)) as source, Image.open(io.BytesIO(data)) as stored:
        # The source's own quality: its tables, transposed along with the coefficients
        # when the picture is turned a quarter.
        tables = {k: transposed_table(v) for k, v in source.quantization.items()}
        assert stored.quantization == (tables if swaps else source.quantization)
        assert JpegImagePlugin.get_sampling(stored) == JpegImagePlugin.get_sampling(source)
        assert not stored.getexif()
        assert not stored.getexif().get_ifd(0x8825)
        expected = ImageOps.exif_transpose(source)
        width, height = stored.size
        for full, kept in ((expected.width, width), (expected.height, height)):
            assert 0 <= full - kept < 16
            assert full - kept <= full / 100
        # Where the kept pixels are in the upright picture: the trim takes the ragged
        # strip at the source's right and bottom edges, wherever the turn puts them.
        kept = Image.new("L", source.size)
        kept.paste(255, (0, 0, *((height, width) if swaps else (width, height))))
        region = kept.transpose(intake.TRANSPOSE[orientation]).getbbox()
        difference = ImageChops.difference(expected.crop(region), stored.convert("RGB"))
        mean = sum(ImageStat.Stat(difference).mean) / 3
        assert mean < 1.0, mean
    assert corpus.SERIAL.encode() not in data
    assert b"Pixelphone" not in data
    assert b"Exif\x00\x00" not in data


def test_a_snap_decodes_its_original_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Preview and thumbnail come from intake's one reduced decode, rotated photo or not."""
    decodes: list[str] = []
    get_decoder = Image._getdecoder

    def counting(mode: str, decoder_name: str, *args: object, **kwargs: object) -> object:
        decodes.append(decoder_name)
        return get_decoder(mode, decoder_name, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Image, "_getdecoder", counting)
    for photo in (rotated_photo(6), corpus.phone_photo(2000, 1500, noise=10)):
        decodes.clear()
        with accept(photo) as accepted:
            preview, thumbnail = renditions(accepted, LIMITS)
            decoded_size = accepted.decoded.size
        assert decodes == ["jpeg"]
        assert max(decoded_size) < 2000  # draft mode: never the full size
        assert preview.data
        assert thumbnail.data
