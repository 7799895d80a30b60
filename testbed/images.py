"""Test images made on the fly (never downloaded)."""

from __future__ import annotations

import io

from PIL import Image, ImageDraw


def photo(
    width: int = 1200,
    height: int = 900,
    fmt: str = "JPEG",
    colour: tuple[int, int, int] = (200, 120, 40),
    **save: object,
) -> bytes:
    """A photo-like image: a gradient sky and a few shapes, so encoders do real work."""
    image = Image.new("RGB", (width, height), colour)
    draw = ImageDraw.Draw(image)
    for row in range(0, height, max(1, height // 64)):
        shade = int(255 * row / height)
        draw.line(
            [(0, row), (width, row)], fill=(colour[0], shade, 255 - shade), width=height // 64 + 1
        )
    draw.ellipse([width // 4, height // 4, width // 2, height // 2], fill=(240, 220, 60))
    draw.rectangle([width // 2, height // 2, width - 10, height - 10], fill=(30, 90, 40))
    out = io.BytesIO()
    image.save(out, fmt, **save)
    return out.getvalue()
