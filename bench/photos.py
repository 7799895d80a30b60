"""Phone-size test photos for the load scenarios, and cheap distinct variants of them.

ai-svc caches ideas by the image's sha256, so a load test that repeats one photo
measures the cache, not the model call. Encoding a fresh 12 MP JPEG per request would
cost the load generator more CPU than the services spend on it, so a small pool of base
photos is made once, before the timed phase, and each request gets a *variant*: a copy
whose quantisation table (DQT) has a few high-frequency entries nudged. That changes the
decoded pixels (so re-encoded or hashed, every variant is a different image) without
touching the entropy-coded data, in microseconds, and the file stays a valid JPEG of the
same size that any decoder opens.
"""

from __future__ import annotations

import io
import itertools
import random
from pathlib import Path

from PIL import Image, ImageDraw

PHONE_SIZE = (4032, 3024)  # a 12 MP phone camera, 4:3
SMOKE_SIZE = (1280, 960)
JPEG_QUALITY = 90
VARIANT_DIGITS = 16  # high-frequency luma entries used: 4**16 distinct variants
VARIANTS_PER_LOAD = 1_000_000

_variant_blocks = itertools.count(0, VARIANTS_PER_LOAD)


def fresh_variants() -> int:
    """The first of a block of variant numbers no other load of this process has used.

    ai-svc caches an answer by the photo's hash and the preset, and every scenario of a
    run (the smoke run shares one stack between them) snaps with the same preset: a load
    that reused another's variants would be answered from the cache, at once.
    """
    return next(_variant_blocks)


DQT = 0xDB
SOS = 0xDA
SOI = b"\xff\xd8"
STANDALONE_MARKERS = {0x01, *range(0xD0, 0xD8)}


def make_photo(width: int, height: int, seed: int) -> bytes:
    """A photo-like JPEG with camera EXIF: sky gradient, shapes and sensor-like grain.

    The grain matters: without it a synthetic image compresses to a tenth of a real
    phone photo's size and the services would decode far fewer bytes than in use.
    """
    rng = random.Random(seed)
    colour = (rng.randrange(60, 240), rng.randrange(60, 240), rng.randrange(60, 240))
    image = Image.new("RGB", (width, height), colour)
    draw = ImageDraw.Draw(image)
    step = max(1, height // 64)
    for row in range(0, height, step):
        shade = int(255 * row / height)
        draw.line([(0, row), (width, row)], fill=(colour[0], shade, 255 - shade), width=step + 1)
    for _ in range(6):
        left, top = rng.randrange(width), rng.randrange(height)
        right = min(width, left + rng.randrange(width // 8, width // 2))
        bottom = min(height, top + rng.randrange(height // 8, height // 2))
        fill = (rng.randrange(256), rng.randrange(256), rng.randrange(256))
        if rng.random() < 0.5:
            draw.ellipse([left, top, right, bottom], fill=fill)
        else:
            draw.rectangle([left, top, right, bottom], fill=fill)
    small = (max(1, width // 4), max(1, height // 4))
    grain = Image.frombytes("RGB", small, rng.randbytes(small[0] * small[1] * 3))
    image = Image.blend(image, grain.resize((width, height), Image.Resampling.BILINEAR), 0.25)
    exif = Image.Exif()
    exif[0x010F] = "IdeaSnap Bench"  # Make
    exif[0x0110] = "Phone 12MP"  # Model
    exif[0x0112] = 1  # Orientation
    exif[0x0132] = "2025:01:01 12:00:00"  # DateTime
    out = io.BytesIO()
    image.save(out, "JPEG", quality=JPEG_QUALITY, exif=exif.tobytes())
    return out.getvalue()


def photo_pool(directory: Path, count: int, size: tuple[int, int] = PHONE_SIZE) -> list[Path]:
    """Make (or reuse) ``count`` base photos of ``size`` in ``directory``; deterministic."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(count):
        path = directory / f"photo-{size[0]}x{size[1]}-{index}.jpg"
        if not path.exists():
            partial = path.with_suffix(".part")
            partial.write_bytes(make_photo(*size, seed=index))
            partial.replace(path)
        paths.append(path)
    return paths


def luma_table_offsets(jpeg: bytes) -> list[int]:
    """Byte offsets of the first 8-bit quantisation table's 64 entries (zig-zag order)."""
    if not jpeg.startswith(SOI):
        raise ValueError("not a JPEG")
    position = 2
    while position + 4 <= len(jpeg):
        if jpeg[position] != 0xFF:
            raise ValueError(f"JPEG marker expected at byte {position}")
        marker = jpeg[position + 1]
        if marker == 0xFF:  # fill byte
            position += 1
            continue
        if marker in STANDALONE_MARKERS:
            position += 2
            continue
        length = int.from_bytes(jpeg[position + 2 : position + 4], "big")
        if marker == SOS:
            break
        if marker == DQT:
            table = position + 4
            end = position + 2 + length
            while table < end:
                precision = jpeg[table] >> 4
                if precision == 0:
                    return list(range(table + 1, table + 65))
                table += 1 + 64 * 2
        position += 2 + length
    raise ValueError("no 8-bit quantisation table before the scan")


def variant(jpeg: bytes, number: int, offsets: list[int] | None = None) -> bytes:
    """The ``number``-th distinct variant of ``jpeg`` (number 0 is a plain copy).

    Each base-4 digit of ``number`` nudges one of the last 16 zig-zag luma entries by
    0..3 (down instead of up near 255), so different numbers below 4**16 always give
    different tables.
    """
    if not 0 <= number < 4**VARIANT_DIGITS:
        raise ValueError("variant number out of range")
    entries = (offsets or luma_table_offsets(jpeg))[-VARIANT_DIGITS:]
    data = bytearray(jpeg)
    for offset in entries:
        number, digit = divmod(number, 4)
        value = data[offset]
        data[offset] = value + digit if value + digit <= 255 else value - digit
    return bytes(data)


def priming_photo(paths: list[Path]) -> bytes:
    """A photo no load run sends (the last variant number), for a stack's first snap."""
    return variant(paths[0].read_bytes(), 4**VARIANT_DIGITS - 1)
