"""Removing metadata from JPEG, PNG and WebP files without touching their pixels.

Each format is a sequence of tagged blocks (JPEG marker segments, PNG chunks, RIFF
chunks). Copying the blocks that make up the picture and its colours, and dropping every
other one, gives a file that decodes to exactly the same pixels, costs a fraction of a
decode and loses no quality (re-encoding would do both). An allow-list decides, so a
block nobody has thought of is dropped, not kept.

Kept: the compressed image data, the tables needed to decode it, the ICC colour profile
(it defines what the colours are), JFIF and Adobe headers (they say how to read the
colour channels), transparency, gamma and colour-space chunks, animation control.
Dropped: EXIF (GPS position, camera make, model and serial numbers, owner, dates,
embedded thumbnails), XMP, IPTC and Photoshop blocks, comments, MPF secondary images,
C2PA/JUMBF manifests, text chunks, and anything after the end of the image (where
polyglot payloads hide).

Files are read in blocks, never whole, and nothing is copied: a stripper describes the
clean file to a :class:`CleanFile` as pieces (small literal headers, and byte ranges of
the source for the bulk of the data), hashing it on the way. The clean file is then
read straight out of the source when it is stored. A file whose structure is broken
(truncated, no end marker, a length running past the end) raises
:class:`MalformedImage`.
"""

from __future__ import annotations

import hashlib
import io
import re
import struct
from typing import IO, Any

BLOCK = 256 * 1024


class MalformedImage(ValueError):
    """The file's structure is broken (truncated, inconsistent lengths...)."""


class TooComplex(MalformedImage):
    """Valid perhaps, but built to be slow: thousands of scans, segments or chunks.

    A progressive JPEG decodes its whole image once per scan, so a 10 MB file of tiny
    scans costs minutes of CPU; camera and editor files have at most a few dozen of each.
    """


MAX_JPEG_SCANS = 100
MAX_JPEG_SEGMENTS = 2000
MAX_PNG_CHUNKS = 100_000
MAX_WEBP_CHUNKS = 10_000


class CleanFile:
    """The cleaned file as pieces of its source, readable like a file once described.

    Strippers call :meth:`literal` for bytes they build and :meth:`source_range` for
    bytes kept as they are in the source; the sha256 and size are computed as the
    pieces are described, so the clean file's hash is known before it is stored.
    """

    def __init__(self, source: IO[bytes]) -> None:
        self.source = source
        self.pieces: list[bytes | tuple[int, int]] = []  # literal, or (offset, length)
        self.hash = hashlib.sha256()
        self.size = 0

    def literal(self, data: bytes) -> None:
        self.hash.update(data)
        self.size += len(data)
        self.pieces.append(bytes(data))

    def source_range(self, offset: int, data: bytes | memoryview) -> None:
        self.hash.update(data)
        self.size += len(data)
        last = self.pieces[-1] if self.pieces else None
        if isinstance(last, tuple) and last[0] + last[1] == offset:
            self.pieces[-1] = (last[0], last[1] + len(data))
        else:
            self.pieces.append((offset, len(data)))

    @property
    def sha256(self) -> str:
        return self.hash.hexdigest()

    def reader(self) -> PiecesReader:
        return PiecesReader(self.source, self.pieces, self.size)

    def getvalue(self) -> bytes:
        # One read of the known size: one pass over the pieces, not one per 8 KiB.
        return self.reader().read(self.size)


class PiecesReader(io.RawIOBase):
    """A read-only, seekable file over a :class:`CleanFile`'s pieces."""

    def __init__(self, source: IO[bytes], pieces: list[bytes | tuple[int, int]], size: int) -> None:
        super().__init__()
        self.source = source
        self.pieces = pieces
        self.size = size
        self.position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.position, io.SEEK_END: self.size}[whence]
        self.position = min(max(0, base + offset), self.size)
        return self.position

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        want = min(len(view), self.size - self.position)
        written = 0
        start = 0
        for piece in self.pieces:
            length = len(piece) if isinstance(piece, bytes) else piece[1]
            end = start + length
            if written < want and end > self.position + written:
                inside = self.position + written - start
                count = min(length - inside, want - written)
                if isinstance(piece, bytes):
                    view[written : written + count] = piece[inside : inside + count]
                else:
                    self.source.seek(piece[0] + inside)
                    data = self.source.read(count)
                    if len(data) != count:
                        raise MalformedImage("the source changed while being read")
                    view[written : written + count] = data
                written += count
            start = end
            if written >= want:
                break
        self.position += written
        return written


class BlockReader:
    """Buffered reading with look-ahead over a file, one block in memory at a time."""

    def __init__(self, source: IO[bytes], block: int = BLOCK) -> None:
        self.source = source
        self.block = block
        self.buffer = b""
        self.position = 0
        self.base = source.tell()  # source offset of buffer[0]

    @property
    def offset(self) -> int:
        """The source offset of the next byte."""
        return self.base + self.position

    def ensure(self, count: int) -> bool:
        while len(self.buffer) - self.position < count:
            more = self.source.read(max(self.block, count))
            if not more:
                return False
            self.base += self.position
            self.buffer = self.buffer[self.position :] + more
            self.position = 0
        return True

    def take(self, count: int) -> bytes:
        if not self.ensure(count):
            raise MalformedImage("the file ends early")
        data = self.buffer[self.position : self.position + count]
        self.position += count
        return data

    def keep(self, count: int, out: CleanFile | None) -> None:
        """Pass ``count`` bytes to ``out`` as a source range (or skip them when None)."""
        while count > 0:
            if not self.ensure(1):
                raise MalformedImage("the file ends early")
            available = min(count, len(self.buffer) - self.position)
            if out is not None:
                out.source_range(
                    self.offset,
                    memoryview(self.buffer)[self.position : self.position + available],
                )
            self.position += available
            count -= available


# --- JPEG -------------------------------------------------------------------------------

SOI, EOI, SOS, COM = 0xD8, 0xD9, 0xDA, 0xFE
APP0, APP1, APP2, APP14 = 0xE0, 0xE1, 0xE2, 0xEE
STANDALONE_MARKERS = frozenset({0x01, *range(0xD0, 0xD8)})
# A marker inside entropy-coded data: 0xFF then anything but a stuffed zero, a restart
# marker (part of the data) or another 0xFF (fill).
MARKER_IN_SCAN = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")


def keep_jpeg_segment(marker: int, payload: bytes) -> bool:
    if APP0 <= marker <= 0xEF:
        if marker == APP0:
            return payload.startswith(b"JFIF\x00")  # not JFXX: that one is a thumbnail
        if marker == APP2:
            return payload.startswith(b"ICC_PROFILE\x00")
        if marker == APP14:
            return payload.startswith(b"Adobe")
        return False  # EXIF, XMP, MPF, IPTC/Photoshop, JUMBF/C2PA, maker segments
    return marker != COM


def next_jpeg_marker(reader: BlockReader) -> int:
    if reader.take(1) != b"\xff":
        raise MalformedImage("expected a JPEG marker")
    while True:
        code = reader.take(1)[0]
        if code != 0xFF:  # 0xFF before a marker is fill
            return code


def keep_entropy_coded(reader: BlockReader, out: CleanFile) -> None:
    """Keep scan data up to (not including) the next marker that is not a restart."""
    while True:
        if not reader.ensure(2):
            raise MalformedImage("the image data ends without an end marker")
        found = MARKER_IN_SCAN.search(reader.buffer, reader.position)
        if found is not None:
            reader.keep(found.start() - reader.position, out)
            return
        # Keep a trailing 0xFF back: it may start a marker completed by the next block.
        end = len(reader.buffer) - (1 if reader.buffer.endswith(b"\xff") else 0)
        reader.keep(end - reader.position, out)
        if not reader.ensure(2):
            raise MalformedImage("the image data ends without an end marker")


def strip_jpeg(source: IO[bytes], out: CleanFile) -> None:
    reader = BlockReader(source)
    if reader.take(2) != b"\xff\xd8":
        raise MalformedImage("not a JPEG")
    out.literal(b"\xff\xd8")
    segments = scans = 0
    while True:
        segments += 1
        if segments > MAX_JPEG_SEGMENTS:
            raise TooComplex("too many JPEG segments")
        marker = next_jpeg_marker(reader)
        if marker == EOI:
            out.literal(b"\xff\xd9")
            return  # anything after the end of the image is dropped
        if marker in STANDALONE_MARKERS or marker == SOI:
            raise MalformedImage(f"unexpected JPEG marker 0x{marker:02x}")
        header = reader.take(2)
        (length,) = struct.unpack(">H", header)
        if length < 2:
            raise MalformedImage("JPEG segment length under 2")
        payload = reader.take(length - 2)
        if keep_jpeg_segment(marker, payload):
            out.literal(bytes((0xFF, marker)) + header + payload)
        if marker == SOS:
            scans += 1
            if scans > MAX_JPEG_SCANS:
                raise TooComplex("too many JPEG scans")
            keep_entropy_coded(reader, out)


# --- PNG --------------------------------------------------------------------------------

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_CRITICAL = frozenset({b"IHDR", b"PLTE", b"IDAT", b"IEND"})
PNG_KEPT = PNG_CRITICAL | {
    b"tRNS",  # transparency
    b"gAMA",
    b"cHRM",
    b"sRGB",
    b"iCCP",
    b"sBIT",
    b"cICP",  # colour space and HDR description
    b"mDCV",
    b"cLLI",
    b"acTL",  # animation (APNG)
    b"fcTL",
    b"fdAT",
}
PNG_MAX_CHUNK = 2**31 - 1


def strip_png(source: IO[bytes], out: CleanFile) -> None:
    reader = BlockReader(source)
    if reader.take(8) != PNG_SIGNATURE:
        raise MalformedImage("not a PNG")
    out.literal(PNG_SIGNATURE)
    first = True
    for _ in range(MAX_PNG_CHUNKS):
        header = reader.take(8)
        length, kind = struct.unpack(">I4s", header)
        if length > PNG_MAX_CHUNK:
            raise MalformedImage("PNG chunk length out of range")
        if first and kind != b"IHDR":
            raise MalformedImage("PNG does not start with IHDR")
        first = False
        critical = not kind[0] & 0x20
        if critical and kind not in PNG_CRITICAL:
            raise MalformedImage("unknown critical PNG chunk")
        kept = kind in PNG_KEPT
        if kept:
            out.literal(header)
        reader.keep(length + 4, out if kept else None)  # data and CRC
        if kind == b"IEND":
            return  # anything after IEND is dropped
    raise TooComplex("too many PNG chunks")


# --- WebP -------------------------------------------------------------------------------

WEBP_KEPT = frozenset({b"VP8X", b"VP8 ", b"VP8L", b"ALPH", b"ANIM", b"ANMF", b"ICCP"})
VP8X_EXIF_FLAG = 0x08
VP8X_XMP_FLAG = 0x04


def strip_webp(source: IO[bytes], out: CleanFile) -> None:
    """RIFF sizes come first, so the chunk list is read once, then the kept ones copied."""
    start = source.tell()
    header = source.read(12)
    if len(header) < 12 or header[0:4] != b"RIFF" or header[8:12] != b"WEBP":
        raise MalformedImage("not a WebP")
    (riff_size,) = struct.unpack("<I", header[4:8])
    end = start + 8 + riff_size
    chunks: list[tuple[bytes, int, int]] = []  # kind, offset of data, data size
    offset = start + 12
    while offset < end:
        source.seek(offset)
        chunk_header = source.read(8)
        if len(chunk_header) < 8:
            raise MalformedImage("WebP chunk header cut short")
        kind, size = struct.unpack("<4sI", chunk_header)
        padded = size + (size & 1)
        if offset + 8 + padded > end:
            raise MalformedImage("WebP chunk runs past the end")
        chunks.append((kind, offset + 8, size))
        if len(chunks) > MAX_WEBP_CHUNKS:
            raise TooComplex("too many WebP chunks")
        offset += 8 + padded
    kept = [chunk for chunk in chunks if chunk[0] in WEBP_KEPT]
    if not any(kind in (b"VP8 ", b"VP8L", b"ANMF") for kind, _, _ in kept):
        raise MalformedImage("WebP has no image data")
    source.seek(0, 2)
    if source.tell() < end:
        raise MalformedImage("WebP is truncated")
    new_size = 4 + sum(8 + size + (size & 1) for _, _, size in kept)
    out.literal(b"RIFF" + struct.pack("<I", new_size) + b"WEBP")
    for kind, data_offset, size in kept:
        source.seek(data_offset)
        padded = size + (size & 1)
        if kind == b"VP8X":
            payload = bytearray(source.read(padded))
            payload[0] &= ~(VP8X_EXIF_FLAG | VP8X_XMP_FLAG) & 0xFF
            out.literal(struct.pack("<4sI", kind, size) + bytes(payload))
        else:
            out.source_range(data_offset - 8, struct.pack("<4sI", kind, size))
            BlockReader(source).keep(padded, out)
