"""Receiving an upload's body without ever holding it whole in memory.

The body is read in small chunks and written to a spooled temporary file, which moves
to disk past a small threshold, so a 10 MB photo costs a few hundred kilobytes of
memory however many arrive at once. The size limit is enforced while the bytes arrive:
a body that declares more than the limit is refused before a byte of it is read, and
one that turns out larger (chunked, or a multipart part) is refused at the first byte
over, without reading the rest into memory.

A multipart body is decoded here with werkzeug's sans-IO decoder rather than Flask's
``request.files``: only the ``image`` part is kept (other parts are read and
dropped), and the image bytes go straight to the spool, counted as they pass.

Refused bodies of moderate size are drained (read and discarded) before the answer,
so an ordinary client, which sends its whole body before reading the reply, sees the
413 rather than a reset connection. Bodies far over the limit are not drained: the
server closes the connection instead.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, BinaryIO

from flask import request
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.sansio.multipart import Data, Epilogue, Field, File, MultipartDecoder, NeedData

from chassis.errors import ApiError

READ_CHUNK = 64 * 1024
SPOOL_IN_MEMORY = 256 * 1024
MULTIPART_OVERHEAD_BYTES = 64 * 1024
MULTIPART_MAX_PARTS = 16
IMAGE_FIELD = "image"


@dataclass(frozen=True)
class ReceivedBody:
    """The image bytes, spooled and rewound, and how many there are."""

    file: IO[bytes]
    size: int


def too_large(limit: int) -> ApiError:
    return ApiError(
        413,
        "payload_too_large",
        f"The image is larger than the limit of {limit} bytes.",
        details={"limit_bytes": limit},
    )


class CountingReader:
    """The request body, counted as it is read, refused past ``allowance`` bytes."""

    def __init__(self, stream: BinaryIO, allowance: int, limit: int) -> None:
        self.stream = stream
        self.allowance = allowance
        self.limit = limit
        self.count = 0

    def read(self, size: int = READ_CHUNK) -> bytes:
        chunk = self.stream.read(size)
        self.count += len(chunk)
        if self.count > self.allowance:
            raise too_large(self.limit)
        return chunk


def drain(stream: BinaryIO, budget: int) -> bool:
    """Read and drop at most ``budget`` bytes; True when the body ended within it."""
    while budget > 0:
        chunk = stream.read(min(READ_CHUNK, budget))
        if not chunk:
            return True
        budget -= len(chunk)
    return not stream.read(1)


def copy_raw(reader: CountingReader, spool: IO[bytes], limit: int) -> int:
    size = 0
    while chunk := reader.read(READ_CHUNK):
        size += len(chunk)
        if size > limit:
            raise too_large(limit)
        spool.write(chunk)
    return size


def copy_multipart_image(
    reader: CountingReader, boundary: bytes, spool: IO[bytes], limit: int
) -> int:
    decoder = MultipartDecoder(
        boundary, max_form_memory_size=READ_CHUNK * 4, max_parts=MULTIPART_MAX_PARTS
    )
    size = 0
    found = False
    in_image = False
    while True:
        chunk = reader.read(READ_CHUNK)
        decoder.receive_data(chunk or None)
        event = decoder.next_event()
        while not isinstance(event, NeedData | Epilogue):
            if isinstance(event, File | Field):
                # The first part named "image" is the image; any other part is dropped.
                in_image = event.name == IMAGE_FIELD and not found
                found = found or in_image
            elif isinstance(event, Data) and in_image:
                size += len(event.data)
                if size > limit:
                    raise too_large(limit)
                spool.write(event.data)
            event = decoder.next_event()
        if isinstance(event, Epilogue) or not chunk:
            break
    if not found:
        raise ApiError(400, "missing_image", "Send the image in a multipart field 'image'.")
    return size


@contextmanager
def received_image(
    limit: int,
    spool_dir: Path | None = None,
    observe_size: Callable[[int], None] | None = None,
) -> Iterator[ReceivedBody]:
    """Receive the current request's image into a spool that is removed afterwards.

    ``observe_size`` is told the body's size: the declared length, or the
    bytes read when the body is chunked, whatever the outcome.
    """
    multipart = request.mimetype == "multipart/form-data"
    allowance = limit + MULTIPART_OVERHEAD_BYTES if multipart else limit
    declared = request.content_length
    stream: BinaryIO = request.stream
    reader = CountingReader(stream, allowance, limit)
    spool = tempfile.SpooledTemporaryFile(  # noqa: SIM115 - closed in the finally below
        max_size=SPOOL_IN_MEMORY, dir=spool_dir, prefix="upload-"
    )
    try:
        if declared is not None and declared > allowance:
            raise too_large(limit)
        if multipart:
            boundary = request.mimetype_params.get("boundary", "")
            if not boundary:
                raise ApiError(400, "invalid_multipart", "The multipart body has no boundary.")
            try:
                size = copy_multipart_image(reader, boundary.encode("latin-1"), spool, limit)
            except (ValueError, RequestEntityTooLarge, UnicodeError) as error:
                raise ApiError(
                    400, "invalid_multipart", "The multipart body could not be read."
                ) from error
        else:
            size = copy_raw(reader, spool, limit)
        spool.seek(0)
        yield ReceivedBody(file=spool, size=size)
    except ApiError as error:
        if error.status == 413:
            remaining = None if declared is None else declared - reader.count
            if remaining is None or remaining <= 2 * limit:
                drain(stream, 2 * limit if remaining is None else remaining)
        raise
    finally:
        spool.close()
        if observe_size is not None:
            observe_size(declared if declared is not None else reader.count)
