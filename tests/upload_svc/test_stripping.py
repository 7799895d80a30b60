"""Lossless metadata removal: same pixels, no metadata, nothing after the image."""

from __future__ import annotations

import io

import pytest
from PIL import Image, ImageChops

from testbed import corpus
from upload_svc.sniffing import HEIF, JPEG, PNG, WEBP, sniff
from upload_svc.stripping import (
    CleanFile,
    MalformedImage,
    PiecesReader,
    TooComplex,
    strip_jpeg,
    strip_png,
    strip_webp,
)


def stripped(strip: object, data: bytes) -> bytes:
    source = io.BytesIO(data)
    clean = CleanFile(source)
    strip(source, clean)  # type: ignore[operator]
    return clean.getvalue()


def same_pixels(first: bytes, second: bytes) -> bool:
    with Image.open(io.BytesIO(first)) as a, Image.open(io.BytesIO(second)) as b:
        if a.size != b.size or a.mode != b.mode:
            return False
        return ImageChops.difference(a.convert("RGBA"), b.convert("RGBA")).getbbox() is None


def test_jpeg_loses_every_metadata_block_and_keeps_its_pixels() -> None:
    original = corpus.with_jpeg_segments(
        corpus.phone_photo(300, 200, exif=corpus.private_exif().tobytes(), noise=20),
        corpus.jpeg_segment(0xE1, b"http://ns.adobe.com/xap/1.0/\x00" + corpus.XMP),
        corpus.iptc_segment(),
        corpus.jpeg_segment(0xFE, corpus.PAYLOAD),
        corpus.jpeg_segment(0xEB, b"JP\x00\x00jumbf c2pa manifest " + corpus.SERIAL.encode()),
    )
    clean = stripped(strip_jpeg, original + b"PK\x03\x04 trailing zip")
    assert same_pixels(original, clean)
    for secret in (corpus.SERIAL.encode(), corpus.OWNER.encode(), corpus.PAYLOAD, b"Exif", b"PK"):
        assert secret not in clean
    with Image.open(io.BytesIO(clean)) as image:
        assert not image.getexif()
        assert "xmp" not in image.info
        assert clean.endswith(b"\xff\xd9")


def test_jpeg_keeps_its_icc_profile_and_adobe_marker() -> None:
    profile = corpus.srgb_icc()
    rgb = io.BytesIO()
    corpus.upright_marker().save(rgb, "JPEG", icc_profile=profile)
    with Image.open(io.BytesIO(stripped(strip_jpeg, rgb.getvalue()))) as image:
        assert image.info["icc_profile"] == profile
    cmyk = corpus.cmyk_jpeg()
    clean = stripped(strip_jpeg, cmyk)
    assert same_pixels(cmyk, clean)
    with Image.open(io.BytesIO(clean)) as image:
        assert "adobe" in image.info


def test_progressive_jpeg_with_restart_markers_survives() -> None:
    image = corpus.photo_pixels(257, 131, noise=30)
    out = io.BytesIO()
    image.save(out, "JPEG", progressive=True, restart_marker_blocks=4, quality=90)
    original = corpus.with_jpeg_segments(out.getvalue(), corpus.jpeg_segment(0xFE, b"note"))
    clean = stripped(strip_jpeg, original)
    assert same_pixels(original, clean)
    assert b"note" not in clean


def test_jpeg_scan_data_is_copied_across_block_boundaries() -> None:
    big = corpus.phone_photo(1600, 1200, noise=80, quality=95)  # scan data > 256 KiB
    assert len(big) > 600_000
    assert stripped(strip_jpeg, big) == big  # nothing to remove: byte-identical


@pytest.mark.parametrize(
    "broken",
    [
        pytest.param(lambda d: d[:-2], id="no end marker"),
        pytest.param(lambda d: d[: len(d) // 2], id="cut in the scan"),
        pytest.param(lambda d: d[:40], id="cut in a header"),
        pytest.param(lambda d: d[:2] + b"\xff\xe1\x00\x01" + d[2:], id="segment length 1"),
    ],
)
def test_broken_jpeg_structure_is_malformed(broken: object) -> None:
    with pytest.raises(MalformedImage):
        stripped(strip_jpeg, broken(corpus.small_jpeg()))  # type: ignore[operator]


def test_structures_built_to_be_slow_are_refused() -> None:
    with pytest.raises(TooComplex):
        stripped(strip_jpeg, corpus.scan_bomb_jpeg(scans=150))
    many_comments = corpus.with_jpeg_segments(
        corpus.small_jpeg(), *(corpus.jpeg_segment(0xFE, b"x") for _ in range(3000))
    )
    with pytest.raises(TooComplex):
        stripped(strip_jpeg, many_comments)
    png = corpus.encoded(corpus.upright_marker(), "PNG")
    tiny_chunks = corpus.with_png_chunks(
        png, *(corpus.png_chunk(b"prIv", b"") for _ in range(100_001))
    )
    with pytest.raises(TooComplex):
        stripped(strip_png, tiny_chunks)
    normal = io.BytesIO()
    corpus.photo_pixels(300, 200).save(normal, "JPEG", progressive=True)
    assert stripped(strip_jpeg, normal.getvalue()) == normal.getvalue()


def test_png_drops_text_exif_time_and_trailing_data() -> None:
    original = corpus.with_png_chunks(
        corpus.encoded(corpus.upright_marker(), "PNG", exif=corpus.private_exif().tobytes()),
        corpus.png_chunk(b"tEXt", b"Author\x00" + corpus.OWNER.encode()),
        corpus.png_chunk(b"iTXt", b"XML:com.adobe.xmp\x00\x00\x00\x00\x00" + corpus.XMP),
        corpus.png_chunk(b"tIME", b"\x07\xe8\x05\x11\x0e\x03\x16"),
        corpus.png_chunk(b"prIv", b"private ancillary chunk"),
        trailing=b"<html>" + corpus.PAYLOAD,
    )
    clean = stripped(strip_png, original)
    assert same_pixels(original, clean)
    for secret in (
        b"eXIf",
        b"tEXt",
        b"iTXt",
        b"tIME",
        b"prIv",
        corpus.PAYLOAD,
        corpus.SERIAL.encode(),
    ):
        assert secret not in clean
    assert clean.endswith(corpus.png_chunk(b"IEND", b""))


def test_png_keeps_transparency_colour_profile_and_16_bits() -> None:
    for original in (
        corpus.png16_rgb(),
        corpus.encoded(Image.new("P", (20, 20), 3), "PNG", transparency=3),
        corpus.encoded(corpus.upright_marker(), "PNG", icc_profile=corpus.srgb_icc()),
        corpus.animated_png(),
    ):
        clean = stripped(strip_png, original)
        assert clean == original or same_pixels(original, clean)
    assert b"IHDR" in stripped(strip_png, corpus.png16_rgb())
    assert stripped(strip_png, corpus.png16_rgb())[24] == 16  # bit depth kept
    assert b"acTL" in stripped(strip_png, corpus.animated_png())


def test_png_without_iend_or_with_unknown_critical_chunk_is_malformed() -> None:
    png = corpus.encoded(corpus.upright_marker(), "PNG")
    with pytest.raises(MalformedImage):
        stripped(strip_png, png[:-12])
    with pytest.raises(MalformedImage):
        stripped(strip_png, corpus.with_png_chunks(png, corpus.png_chunk(b"CRIT", b"x")))


def test_webp_drops_exif_and_xmp_and_clears_their_flags() -> None:
    original = corpus.encoded(
        corpus.upright_marker(),
        "WEBP",
        exif=corpus.private_exif().tobytes(),
        xmp=corpus.XMP,
        icc_profile=corpus.srgb_icc(),
        lossless=True,
    )
    clean = stripped(strip_webp, original + b"trailing")
    assert same_pixels(original, clean)
    assert corpus.SERIAL.encode() not in clean
    assert b"EXIF" not in clean
    assert b"XMP " not in clean
    assert clean[20] & 0x0C == 0  # VP8X EXIF and XMP flags cleared
    assert int.from_bytes(clean[4:8], "little") == len(clean) - 8
    with Image.open(io.BytesIO(clean)) as image:
        assert image.info.get("icc_profile") == corpus.srgb_icc()
        assert not image.getexif()


def test_animated_webp_keeps_its_frames() -> None:
    original = corpus.animated_webp(frames=5)
    clean = stripped(strip_webp, original)
    with Image.open(io.BytesIO(clean)) as image:
        assert image.n_frames == 5
    assert corpus.SERIAL.encode() not in clean


def test_truncated_webp_is_malformed() -> None:
    webp = corpus.encoded(corpus.photo_pixels(100, 80), "WEBP")
    with pytest.raises(MalformedImage):
        stripped(strip_webp, webp[:-30])


def test_pieces_reader_reads_and_seeks_like_a_file() -> None:
    source = io.BytesIO(b"0123456789abcdef")
    clean = CleanFile(source)
    clean.literal(b"<")
    clean.source_range(2, b"23")
    clean.source_range(4, b"4567")  # merges with the previous range
    clean.literal(b">")
    assert clean.pieces == [b"<", (2, 6), b">"]
    reader = clean.reader()
    assert isinstance(reader, PiecesReader)
    assert reader.read() == b"<234567>"
    reader.seek(3)
    assert reader.read(3) == b"456"
    assert reader.seek(0, io.SEEK_END) == 8
    reader.seek(0)
    assert b"".join(iter(lambda: reader.read(3), b"")) == b"<234567>"


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (b"\xff\xd8\xff\xe0", JPEG),
        (b"\x89PNG\r\n\x1a\n" + bytes(8), PNG),
        (b"RIFF\x00\x00\x00\x00WEBPVP8 ", WEBP),
        (b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic", HEIF),
        (b"\x00\x00\x00\x18ftypmif1\x00\x00\x00\x00mif1heic", HEIF),
        (b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00avifmif1miaf", None),
        (b"\x00\x00\x00\x18ftypmif1\x00\x00\x00\x00mif1avif", None),
        (b"RIFF\x00\x00\x00\x00WAVEfmt ", None),
        (b"GIF89a", None),
        (b"<svg", None),
        (b"", None),
        (b"\xff\xd8", None),
    ],
)
def test_sniffing_by_magic_bytes(head: bytes, expected: str | None) -> None:
    assert sniff(head) == expected
