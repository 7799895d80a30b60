"""Turning received bytes into a clean stored image.

The bytes are spooled (to disk past a small threshold) while counting, so a body over
the limit is refused without being held in memory. The format is decided by the
content, never the file name or the client's content type. The stored image is
re-encoded from pixels with the EXIF orientation applied, so it carries no metadata.
"""

from __future__ import annotations

import hashlib
import io
import tempfile
from dataclasses import dataclass
from typing import BinaryIO

from PIL import Image, ImageOps

from chassis.errors import ApiError

SPOOL_IN_MEMORY = 256 * 1024
READ_CHUNK = 64 * 1024

ACCEPTED_FORMATS = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp"}


@dataclass(frozen=True)
class AcceptedImage:
    data: bytes
    content_type: str
    width: int
    height: int
    sha256: str
    source_format: str
    source_bytes: int


def spool(stream: BinaryIO, max_bytes: int) -> tuple[tempfile.SpooledTemporaryFile, int]:
    buffer = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY)  # noqa: SIM115
    received = 0
    while chunk := stream.read(READ_CHUNK):
        received += len(chunk)
        if received > max_bytes:
            buffer.close()
            raise ApiError(
                413,
                "payload_too_large",
                f"The image is larger than the limit of {max_bytes} bytes.",
            )
        buffer.write(chunk)
    buffer.seek(0)
    return buffer, received


def accept_image(stream: BinaryIO, *, max_bytes: int, max_pixels: int) -> AcceptedImage:
    buffer, received = spool(stream, max_bytes)
    with buffer:
        if received == 0:
            raise ApiError(422, "invalid_image", "The image is empty.")
        try:
            with Image.open(buffer) as probe:
                source_format = probe.format or ""
                if source_format not in ACCEPTED_FORMATS:
                    raise ApiError(415, "unsupported_media_type", "Send a JPEG, PNG or WebP image.")
                if probe.width * probe.height > max_pixels:
                    raise ApiError(422, "image_too_large", "The image has too many pixels.")
                probe.load()
                image = ImageOps.exif_transpose(probe)
        except ApiError:
            raise
        except Image.DecompressionBombError as error:
            raise ApiError(422, "image_too_large", "The image has too many pixels.") from error
        except Exception as error:
            raise ApiError(
                415, "unsupported_media_type", "Send a JPEG, PNG or WebP image."
            ) from error
    out = io.BytesIO()
    if source_format == "JPEG":
        image.convert("RGB").save(out, "JPEG", quality=92, optimize=True)
    elif source_format == "PNG":
        image.save(out, "PNG", optimize=False)
    else:
        image.save(out, "WEBP", quality=92)
    data = out.getvalue()
    return AcceptedImage(
        data=data,
        content_type=ACCEPTED_FORMATS[source_format],
        width=image.width,
        height=image.height,
        sha256=hashlib.sha256(data).hexdigest(),
        source_format=source_format,
        source_bytes=received,
    )
