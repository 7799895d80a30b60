"""Hostile and odd files, generated here (never downloaded), with their documented answers.

Every case is built from Pillow, pillow-heif or a few lines of byte surgery, so each
one says exactly what is odd about it. :func:`hostile_corpus` lists them with the
status and error code upload-svc must give (docs/uploads.md has the same table).
"""

from __future__ import annotations

import functools
import io
import random
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field

from PIL import ExifTags, Image, ImageCms, ImageDraw

PAYLOAD = b"<script>alert('polyglot')</script>"
GPS_LATITUDE = (48.0, 51.0, 29.6)
SERIAL = "SN-0042-PRIVATE"
OWNER = "Jane Private"

# --- photos -----------------------------------------------------------------------------


def phone_photo(
    width: int = 4000,
    height: int = 3000,
    *,
    seed: int = 1,
    quality: int = 90,
    exif: bytes | None = None,
    noise: float = 40.0,
) -> bytes:
    """A photo-like JPEG: gradients, shapes and sensor-like noise, so it has the entropy
    (and file size) of a real phone photo rather than of a flat drawing."""
    image = photo_pixels(width, height, seed=seed, noise=noise)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=quality, exif=exif or b"")
    return out.getvalue()


def photo_pixels(width: int, height: int, *, seed: int = 1, noise: float = 40.0) -> Image.Image:
    red = Image.linear_gradient("L").resize((width, height))
    green = Image.linear_gradient("L").rotate(90).resize((width, height))
    blue = Image.radial_gradient("L").resize((width, height))
    image = Image.merge("RGB", (red, green, blue))
    draw = ImageDraw.Draw(image)
    rng = random.Random(seed)
    for _ in range(300):
        x, y = rng.randrange(width), rng.randrange(height)
        size = rng.randrange(max(2, width // 200), max(3, width // 10))
        colour = (rng.randrange(256), rng.randrange(256), rng.randrange(256))
        draw.ellipse([x, y, x + size, y + size], fill=colour)
    if noise:
        grain = Image.frombytes("RGB", (width, height), rng.randbytes(width * height * 3))
        image = Image.blend(image, grain, min(1.0, noise / 400))
    return image


@functools.cache
def jpeg_near_size(target: int, *, seed: int = 7) -> bytes:
    """A real, noisy photo JPEG just under ``target`` bytes (all of it real pixels)."""
    pixels = photo_pixels(4000, 3000, seed=seed, noise=90.0)
    for quality in range(98, 50, -1):
        out = io.BytesIO()
        pixels.save(out, "JPEG", quality=quality)
        if out.tell() <= target:
            return out.getvalue()
    raise ValueError("could not make a photo that small")


QUADRANTS = {
    "top_left": (255, 0, 0),
    "top_right": (0, 200, 0),
    "bottom_left": (0, 0, 255),
    "bottom_right": (255, 220, 0),
}


def upright_marker(width: int = 90, height: int = 60) -> Image.Image:
    """Four coloured quadrants: any rotation or mirroring shows in where the colours are."""
    image = Image.new("RGB", (width, height))
    half_w, half_h = width // 2, height // 2
    image.paste(QUADRANTS["top_left"], (0, 0, half_w, half_h))
    image.paste(QUADRANTS["top_right"], (half_w, 0, width, half_h))
    image.paste(QUADRANTS["bottom_left"], (0, half_h, half_w, height))
    image.paste(QUADRANTS["bottom_right"], (half_w, half_h, width, height))
    return image


def quadrant_colours(image: Image.Image) -> dict[str, tuple[int, ...]]:
    rgb = image.convert("RGB")
    width, height = rgb.size
    points = {
        "top_left": (width // 4, height // 4),
        "top_right": (3 * width // 4, height // 4),
        "bottom_left": (width // 4, 3 * height // 4),
        "bottom_right": (3 * width // 4, 3 * height // 4),
    }
    return {name: rgb.getpixel(point) for name, point in points.items()}  # type: ignore[misc]


def close_colour(actual: tuple[int, ...], expected: tuple[int, ...], tolerance: int = 40) -> bool:
    return all(abs(a - e) <= tolerance for a, e in zip(actual, expected, strict=False))


# What the camera stored for each orientation: the upright picture transformed back, so
# that applying the EXIF orientation gives the upright picture again.
SENSOR_LAYOUT = {
    1: None,
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}


def private_exif(
    *,
    orientation: int | None = None,
    gps: bool = True,
    captured: str | None = "2024:05:17 14:03:22",
    offset: str | None = None,
) -> Image.Exif:
    exif = Image.Exif()
    exif[ExifTags.Base.Make] = "Pixelphone"
    exif[ExifTags.Base.Model] = "Pixelphone 9 Pro"
    exif[ExifTags.Base.Artist] = OWNER
    exif[ExifTags.Base.Software] = "CameraApp 1.2"
    if orientation is not None:
        exif[ExifTags.Base.Orientation] = orientation
    details = exif.get_ifd(ExifTags.IFD.Exif)
    details[ExifTags.Base.BodySerialNumber] = SERIAL
    details[ExifTags.Base.CameraOwnerName] = OWNER
    if captured:
        details[ExifTags.Base.DateTimeOriginal] = captured
    if offset:
        details[ExifTags.Base.OffsetTimeOriginal] = offset
    if gps:
        exif[ExifTags.IFD.GPSInfo] = {
            ExifTags.GPS.GPSLatitudeRef: "N",
            ExifTags.GPS.GPSLatitude: GPS_LATITUDE,
            ExifTags.GPS.GPSLongitudeRef: "E",
            ExifTags.GPS.GPSLongitude: (2.0, 17.0, 40.2),
        }
    return exif


XMP = (
    b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF '
    b'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
    b'<rdf:Description xmlns:exif="http://ns.adobe.com/exif/1.0/" '
    b'exif:GPSLatitude="48,51.49N" exif:BodySerialNumber="' + SERIAL.encode() + b'"/>'
    b"</rdf:RDF></x:xmpmeta>"
)


def oriented(orientation: int, fmt: str = "JPEG", **save: object) -> bytes:
    """The marker picture as a camera would store it with this EXIF orientation."""
    upright = upright_marker()
    method = SENSOR_LAYOUT[orientation]
    sensor = upright if method is None else upright.transpose(method)
    out = io.BytesIO()
    exif = private_exif(orientation=orientation).tobytes()
    if fmt == "JPEG":
        save.setdefault("quality", 95)
    sensor.save(out, fmt, exif=exif, **save)
    return out.getvalue()


# --- byte surgery -----------------------------------------------------------------------


def jpeg_segment(marker: int, payload: bytes) -> bytes:
    return bytes((0xFF, marker)) + struct.pack(">H", len(payload) + 2) + payload


def with_jpeg_segments(jpeg: bytes, *segments: bytes) -> bytes:
    """Insert segments right after the start-of-image marker."""
    return jpeg[:2] + b"".join(segments) + jpeg[2:]


def iptc_segment() -> bytes:
    """An APP13 Photoshop block with IPTC by-line and city (owner and place)."""

    def dataset(number: int, value: bytes) -> bytes:
        return b"\x1c\x02" + bytes((number,)) + struct.pack(">H", len(value)) + value

    iptc = dataset(80, OWNER.encode()) + dataset(90, b"Paris")
    resource = b"8BIM\x04\x04\x00\x00" + struct.pack(">I", len(iptc)) + iptc
    return jpeg_segment(0xED, b"Photoshop 3.0\x00" + resource)


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def with_png_chunks(png: bytes, *chunks: bytes, trailing: bytes = b"") -> bytes:
    """Insert chunks right after IHDR, and append bytes after IEND."""
    ihdr_end = 8 + 8 + 13 + 4
    return png[:ihdr_end] + b"".join(chunks) + png[ihdr_end:] + trailing


def png_from_rows(width: int, height: int, depth: int, colour_type: int, rows: bytes) -> bytes:
    header = struct.pack(">IIBBBBB", width, height, depth, colour_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", zlib.compress(rows, 6))
        + png_chunk(b"IEND", b"")
    )


def png16_rgb(width: int = 64, height: int = 48) -> bytes:
    """A 16-bit-per-channel RGB PNG (Pillow cannot write one; a camera raw export can)."""
    rows = bytearray()
    for y in range(height):
        rows.append(0)
        for x in range(width):
            rows += struct.pack(">HHH", 65535 * x // width, 65535 * y // height, 40000)
    return png_from_rows(width, height, 16, 2, bytes(rows))


def png16_grey(width: int = 64, height: int = 48, value: int = 40000) -> bytes:
    out = io.BytesIO()
    Image.new("I;16", (width, height), value).save(out, "PNG")
    return out.getvalue()


def pixel_bomb_png(width: int = 7500, height: int = 7500) -> bytes:
    """56 million black pixels in ~60 KB: a real decompression bomb, valid to the end."""
    compressor = zlib.compressobj(9)
    row = bytes(1 + width)
    parts = [compressor.compress(row) for _ in range(height)]
    parts.append(compressor.flush())
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", b"".join(parts))
        + png_chunk(b"IEND", b"")
    )


def huge_declared_png(width: int = 100_000, height: int = 100_000) -> bytes:
    """A PNG header declaring ten billion pixels, with almost no data behind it."""
    small = io.BytesIO()
    Image.new("L", (8, 8)).save(small, "PNG")
    data = small.getvalue()
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return data[:8] + png_chunk(b"IHDR", header) + data[8 + 25 :]


def huge_declared_jpeg(width: int = 60000, height: int = 60000) -> bytes:
    """A small JPEG whose frame header is patched to claim 3.6 billion pixels."""
    data = bytearray(phone_photo(64, 48, noise=0))
    sof = data.find(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def scan_bomb_jpeg(scans: int = 500) -> bytes:
    """A progressive JPEG whose last scan is repeated hundreds of times: each scan makes
    the decoder pass over the whole image again, so such files cost minutes of CPU."""
    out = io.BytesIO()
    photo_pixels(1024, 768, noise=0).save(out, "JPEG", progressive=True, quality=60)
    data = out.getvalue()
    last_scan = data.rindex(b"\xff\xda")
    scan = data[last_scan:-2]
    return data[:-2] + scan * scans + b"\xff\xd9"


def cmyk_jpeg() -> bytes:
    image = Image.new("CMYK", (80, 60), (0, 255, 255, 0))  # pure red ink
    out = io.BytesIO()
    image.save(out, "JPEG", quality=95)
    return out.getvalue()


def animated_webp(frames: int = 4) -> bytes:
    pictures = [Image.new("RGB", (64, 48), (60 * index, 100, 200)) for index in range(frames)]
    out = io.BytesIO()
    pictures[0].save(
        out,
        "WEBP",
        save_all=True,
        append_images=pictures[1:],
        duration=100,
        loop=0,
        exif=private_exif().tobytes(),
        xmp=XMP,
    )
    return out.getvalue()


def animated_png(frames: int = 3) -> bytes:
    pictures = [Image.new("RGBA", (40, 30), (200, 30 * index, 0, 255)) for index in range(frames)]
    out = io.BytesIO()
    pictures[0].save(out, "PNG", save_all=True, append_images=pictures[1:], duration=80)
    return out.getvalue()


def srgb_icc() -> bytes:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def phone_heic(*, orientation: int = 6, alpha: bool = False) -> bytes:
    """An iPhone-like HEIC: HEVC 4:2:0, the marker picture stored sideways with an
    orientation, EXIF with GPS, serial and capture time, XMP and an ICC profile."""
    from pillow_heif import register_heif_opener

    register_heif_opener()
    upright = upright_marker(160, 120)
    method = SENSOR_LAYOUT[orientation]
    sensor = upright if method is None else upright.transpose(method)
    if alpha:
        sensor = sensor.convert("RGBA")
        sensor.putpixel((0, 0), (0, 0, 0, 0))
    exif = private_exif(orientation=orientation, offset="-07:00")
    exif[ExifTags.Base.Make] = "Apple"
    exif[ExifTags.Base.Model] = "iPhone 15 Pro"
    out = io.BytesIO()
    sensor.save(out, "HEIF", quality=85, exif=exif.tobytes(), xmp=XMP, icc_profile=srgb_icc())
    return out.getvalue()


def mpo_with_secret_second_image() -> bytes:
    """A multi-picture JPEG (as phones write for depth or gain maps) whose second
    picture carries GPS EXIF of its own."""
    first = upright_marker()
    second = Image.new("RGB", (32, 32), (9, 9, 9))
    out = io.BytesIO()
    first.save(
        out,
        "MPO",
        save_all=True,
        append_images=[second],
        exif=private_exif().tobytes(),
        quality=95,
    )
    return out.getvalue()


def encoded(image: Image.Image, fmt: str, **save: object) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **save)
    return out.getvalue()


# --- the corpus -------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    name: str
    make: Callable[[], bytes]
    status: int
    code: str | None = None  # error code, or None when accepted
    filename: str = "photo.jpg"
    content_type: str = "image/jpeg"  # what the client claims: never believed
    stored_type: str | None = None  # content type of the stored image when accepted
    absent: tuple[bytes, ...] = field(default_factory=tuple)  # must not be in stored bytes


def cut(data: bytes, keep: float) -> bytes:
    return data[: int(len(data) * keep)]


def small_jpeg() -> bytes:
    return phone_photo(320, 240, noise=10)


def padded_to(size: int) -> Callable[[], bytes]:
    """A valid JPEG followed by filler: exactly ``size`` bytes."""

    def make() -> bytes:
        data = small_jpeg()
        return data + bytes(size - len(data))

    return make


def hostile_corpus(limit: int) -> list[Case]:
    marker = upright_marker()
    jpeg_exif_gps = lambda: phone_photo(  # noqa: E731
        640, 480, exif=private_exif(offset="+02:00").tobytes(), noise=10
    )
    return [
        Case("png named .jpg", lambda: encoded(marker, "PNG"), 201, stored_type="image/png"),
        Case(
            "jpeg named .png",
            small_jpeg,
            201,
            filename="x.png",
            content_type="image/png",
            stored_type="image/jpeg",
        ),
        Case(
            "webp named .heic",
            lambda: encoded(marker, "WEBP"),
            201,
            filename="x.heic",
            content_type="image/heic",
            stored_type="image/webp",
        ),
        Case(
            "html named .jpg",
            lambda: b"<!DOCTYPE html><html><body>" + PAYLOAD + b"</body></html>",
            415,
            "unsupported_media_type",
        ),
        Case(
            "svg named .jpg",
            lambda: b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"><rect/></svg>',
            415,
            "unsupported_media_type",
        ),
        Case("script named .jpg", lambda: b"#!/bin/sh\nrm -rf /\n", 415, "unsupported_media_type"),
        Case("javascript named .jpg", lambda: PAYLOAD, 415, "unsupported_media_type"),
        Case(
            "pdf named .jpg",
            lambda: b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n",
            415,
            "unsupported_media_type",
        ),
        Case("gif", lambda: encoded(marker, "GIF"), 415, "unsupported_media_type", "a.gif"),
        Case("bmp", lambda: encoded(marker, "BMP"), 415, "unsupported_media_type"),
        Case("tiff", lambda: encoded(marker, "TIFF"), 415, "unsupported_media_type"),
        Case("avif", lambda: encoded(marker, "AVIF"), 415, "unsupported_media_type", "a.avif"),
        Case("zero bytes", lambda: b"", 422, "invalid_image"),
        Case("jpeg magic only", lambda: b"\xff\xd8\xff", 422, "invalid_image"),
        Case("truncated jpeg", lambda: small_jpeg()[:1500], 422, "invalid_image"),
        Case("jpeg without end marker", lambda: small_jpeg()[:-2], 422, "invalid_image"),
        Case(
            "truncated png",
            lambda: cut(encoded(photo_pixels(200, 150), "PNG"), keep=0.5),
            422,
            "invalid_image",
        ),
        Case(
            "png without IEND",
            lambda: encoded(marker, "PNG")[:-12],
            422,
            "invalid_image",
        ),
        Case(
            "truncated webp",
            lambda: encoded(photo_pixels(200, 150), "WEBP")[:-40],
            422,
            "invalid_image",
        ),
        Case(
            "garbage after jpeg magic",
            lambda: b"\xff\xd8\xff\xe0" + bytes(range(256)) * 4,
            422,
            "invalid_image",
        ),
        Case("pixel bomb png (56 Mpx in ~60 KB)", pixel_bomb_png, 422, "image_too_large"),
        Case("png declaring 10 Gpx", huge_declared_png, 422, "image_too_large"),
        Case("progressive jpeg with 500 scans", scan_bomb_jpeg, 422, "image_too_large"),
        Case("jpeg declaring 3.6 Gpx", huge_declared_jpeg, 422, "image_too_large"),
        Case(
            "polyglot: jpeg + zip appended",
            lambda: small_jpeg() + b"PK\x03\x04" + PAYLOAD + b"PK\x05\x06" + bytes(18),
            201,
            stored_type="image/jpeg",
            absent=(b"PK\x03\x04", PAYLOAD),
        ),
        Case(
            "polyglot: html in jpeg comment",
            lambda: with_jpeg_segments(small_jpeg(), jpeg_segment(0xFE, b"*/" + PAYLOAD + b"/*")),
            201,
            stored_type="image/jpeg",
            absent=(PAYLOAD,),
        ),
        Case(
            "polyglot: html in png text chunk and after IEND",
            lambda: with_png_chunks(
                encoded(marker, "PNG"),
                png_chunk(b"tEXt", b"Comment\x00" + PAYLOAD),
                trailing=b"<html>" + PAYLOAD,
            ),
            201,
            stored_type="image/png",
            absent=(PAYLOAD,),
        ),
        Case(
            "polyglot: gif + javascript",
            lambda: b"GIF89a/*\x01\x00\x01\x00\x00\x00\x00*/=0;" + PAYLOAD,
            415,
            "unsupported_media_type",
        ),
        Case(
            "polyglot: html wrapping a jpeg",
            lambda: b"<html>" + small_jpeg() + b"</html>",
            415,
            "unsupported_media_type",
        ),
        Case("over the limit by one byte", padded_to(limit + 1), 413, "payload_too_large"),
        Case(
            "exactly the limit",
            padded_to(limit),
            201,
            stored_type="image/jpeg",
        ),
        Case(
            "exif with gps, serial, owner; xmp; iptc",
            lambda: with_jpeg_segments(
                jpeg_exif_gps(),
                jpeg_segment(0xE1, b"http://ns.adobe.com/xap/1.0/\x00" + XMP),
                iptc_segment(),
            ),
            201,
            stored_type="image/jpeg",
            absent=(SERIAL.encode(), OWNER.encode(), b"Pixelphone", b"Exif\x00\x00", b"8BIM"),
        ),
        *(
            Case(
                f"jpeg orientation {value}",
                lambda value=value: oriented(value),
                201,
                stored_type="image/jpeg",
                absent=(b"Exif\x00\x00", SERIAL.encode()),
            )
            for value in range(1, 9)
        ),
        Case(
            "png orientation 6 (eXIf)",
            lambda: oriented(6, "PNG"),
            201,
            filename="x.png",
            stored_type="image/png",
            absent=(b"eXIf", SERIAL.encode()),
        ),
        Case(
            "webp orientation 3 (EXIF chunk)",
            lambda: oriented(3, "WEBP", quality=95),
            201,
            filename="x.webp",
            stored_type="image/webp",
            absent=(SERIAL.encode(),),
        ),
        Case("cmyk jpeg", cmyk_jpeg, 201, stored_type="image/jpeg"),
        Case("16-bit rgb png", png16_rgb, 201, filename="x.png", stored_type="image/png"),
        Case("16-bit grey png", png16_grey, 201, filename="x.png", stored_type="image/png"),
        Case(
            "animated webp with exif and xmp",
            animated_webp,
            201,
            filename="a.webp",
            stored_type="image/webp",
            absent=(SERIAL.encode(), b"EXIF", b"XMP "),
        ),
        Case("animated png", animated_png, 201, filename="a.png", stored_type="image/png"),
        Case(
            "heic from a phone",
            phone_heic,
            201,
            filename="IMG_0001.HEIC",
            content_type="image/heic",
            stored_type="image/jpeg",
            absent=(SERIAL.encode(), b"iPhone", b"Exif\x00\x00"),
        ),
        Case(
            "heic with transparency",
            lambda: phone_heic(alpha=True),
            201,
            filename="IMG_0002.HEIC",
            content_type="image/heic",
            stored_type="image/png",
            absent=(SERIAL.encode(), b"iPhone"),
        ),
        Case(
            "multi-picture jpeg (mpo)",
            mpo_with_secret_second_image,
            201,
            stored_type="image/jpeg",
            absent=(b"MPF\x00", SERIAL.encode()),
        ),
    ]
