"""What a body is, judged by its first bytes alone.

The file name and the client's ``Content-Type`` are never consulted: both are chosen by
the sender. Only the four accepted families are recognised here; everything else,
however it is named, is not an image this service takes. Pillow then has to agree
(it opens the file restricted to the sniffed format), so a file must both start like
and parse as the same format.
"""

from __future__ import annotations

SNIFF_BYTES = 64

JPEG = "JPEG"
PNG = "PNG"
WEBP = "WEBP"
HEIF = "HEIF"

# ISO base media "ftyp" brands of HEIF images (HEVC-coded or the generic image brands).
HEIF_MAJOR_BRANDS = frozenset({b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx"})
HEIF_GENERIC_BRANDS = frozenset({b"mif1", b"msf1"})


def heif_brands(head: bytes) -> tuple[bytes, set[bytes]] | None:
    if len(head) < 16 or head[4:8] != b"ftyp":
        return None
    box_size = int.from_bytes(head[0:4], "big")
    end = min(len(head), box_size) if box_size >= 16 else 16
    major = head[8:12]
    compatible = {head[offset : offset + 4] for offset in range(16, end - 3, 4)}
    return major, compatible


def sniff(head: bytes) -> str | None:
    """The accepted format ``head`` starts with (Pillow's format name), or None."""
    if head.startswith(b"\xff\xd8\xff"):
        return JPEG
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return PNG
    if len(head) >= 16 and head[0:4] == b"RIFF" and head[8:12] == b"WEBP":
        return WEBP
    brands = heif_brands(head)
    if brands is not None:
        major, compatible = brands
        if major in HEIF_MAJOR_BRANDS:
            return HEIF
        # A generic image brand is HEIF only when an HEVC brand vouches for it: AVIF
        # files carry "mif1" too.
        if major in HEIF_GENERIC_BRANDS and compatible & HEIF_MAJOR_BRANDS:
            return HEIF
    return None


def describe(head: bytes) -> str:
    """A short name for a refused body, for logs (never for a decision)."""
    stripped = head.lstrip().lower()
    known = (
        (b"<svg", "svg"),
        (b"<?xml", "xml"),
        (b"<!doctype html", "html"),
        (b"<html", "html"),
        (b"<script", "html"),
        (b"%pdf", "pdf"),
        (b"gif8", "gif"),
        (b"bm", "bmp"),
        (b"ii*\x00", "tiff"),
        (b"mm\x00*", "tiff"),
        (b"pk\x03\x04", "zip"),
        (b"#!", "script"),
    )
    for prefix, name in known:
        if stripped.startswith(prefix):
            return name
    brands = heif_brands(head)
    if brands is not None:
        return f"isobmff:{brands[0].decode('ascii', 'replace')}"
    return "unknown" if head else "empty"
