"""From received bytes to a clean image ready to store, with its thumbnail and preview.

1. Sniff: the first bytes must be a JPEG, PNG, WebP or HEIC; anything else is 415,
   whatever its name or declared type.
2. Open with Pillow restricted to the sniffed format, and check the declared size
   (pixels, frames) before decoding anything, so a pixel bomb costs nothing: 422
   ``image_too_large``.
3. Decode. Before Pillow parses anything, the file's block structure is walked (see
   step 4); a truncated one, or one built to be slow (thousands of progressive scans),
   stops there. Then Pillow decodes every byte of image data, so a truncated or corrupt
   file fails here at the latest: 422 ``invalid_image``. A JPEG is decoded in draft
   mode, at the smallest 1/2-1/4-1/8 scale still big enough for the preview: the
   decoder validates the whole file but never builds the full-size pixels.
4. Clean. When no rotation is needed (the common case), the metadata blocks are cut out
   of the file without re-encoding (:mod:`upload_svc.stripping`): same pixels, same
   size, no quality lost. A JPEG whose EXIF orientation is not "upright" is stripped,
   then turned in the DCT domain (:mod:`upload_svc.jpeg_transform`) and decoded once,
   in draft mode; other rotated images, and a JPEG the transform declines, are rotated
   and re-encoded (a JPEG with its own quantisation tables, so at its own quality) and
   written without any metadata. HEIC is re-encoded as JPEG (PNG when it has
   transparency): few viewers outside Apple's can show HEIC.
5. Render the preview and the thumbnail from the pixels decoded in step 3
   (:func:`renditions`, a separate step so storing can start meanwhile).

A stripped file is not written anywhere: it is described as pieces of the received
file (:class:`upload_svc.stripping.CleanFile`) and read from there when stored. A
re-encoded file goes to a spooled temporary file. Both are hashed (sha256) on the way;
nothing is held whole in memory except the small renditions.
"""

from __future__ import annotations

import hashlib
import io
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import structlog
from PIL import Image, JpegImagePlugin

from chassis.errors import ApiError
from upload_svc import exif, jpeg_transform
from upload_svc.derivatives import Rendition, draft_request, render_pair
from upload_svc.metrics import PROCESSING_DURATION
from upload_svc.sniffing import HEIF, JPEG, PNG, SNIFF_BYTES, WEBP, describe, sniff
from upload_svc.stripping import CleanFile, TooComplex, strip_jpeg, strip_png, strip_webp

log = structlog.get_logger(__name__)

OUTPUT_IN_MEMORY = 1024 * 1024
SOURCE_TYPES = {JPEG: "image/jpeg", PNG: "image/png", WEBP: "image/webp", HEIF: "image/heic"}
STRIPPERS = {JPEG: strip_jpeg, PNG: strip_png, WEBP: strip_webp}
PILLOW_FORMATS = {JPEG: ("JPEG", "MPO"), PNG: ("PNG",), WEBP: ("WEBP",), HEIF: ("HEIF",)}
TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}

_heif_lock = threading.Lock()
_heif_ready = False


def ensure_heif_support() -> None:
    """Teach Pillow to read HEIC (once per process, on first need)."""
    global _heif_ready  # noqa: PLW0603
    with _heif_lock:
        if _heif_ready:
            return
        from pillow_heif import register_heif_opener

        # Only the primary image is read: no thumbnails, depth maps or auxiliary images.
        register_heif_opener(thumbnails=False, depth_images=False, aux_images=False)
        _heif_ready = True


@dataclass(frozen=True)
class IntakeLimits:
    max_pixels: int = 50_000_000
    max_frames: int = 300
    max_animation_pixels: int = 100_000_000
    preview_long_side: int = 768
    thumbnail_size: int = 320
    jpeg_quality: int = 92
    rendition_quality: int = 85


@dataclass(frozen=True)
class AcceptedImage:
    """The clean image (``file``, rewound) and what is known about it."""

    file: IO[bytes]
    size: int
    sha256: str
    content_type: str
    source_content_type: str
    width: int
    height: int
    frames: int
    captured_at: str | None
    reencoded: bool
    transformed: bool  # turned upright in the DCT domain: same quality, no re-encode
    decoded: Image.Image
    profile: bytes | None


class HashingWriter:
    """Writes through to ``target`` while counting and hashing (and has no ``fileno``,
    so Pillow's encoders write through it too)."""

    def __init__(self, target: IO[bytes]) -> None:
        self.target = target
        self.hash = hashlib.sha256()
        self.size = 0

    def write(self, data: Any) -> int:
        self.hash.update(data)
        self.size += len(data)
        return self.target.write(data)

    def flush(self) -> None:
        self.target.flush()


def unsupported() -> ApiError:
    return ApiError(
        415,
        "unsupported_media_type",
        "Send a JPEG, PNG, WebP or HEIC image.",
        details={"accepted": sorted(SOURCE_TYPES.values())},
    )


def invalid(message: str = "The image is damaged or incomplete.") -> ApiError:
    return ApiError(422, "invalid_image", message)


def too_large(message: str) -> ApiError:
    return ApiError(422, "image_too_large", message)


def check_size(image: Image.Image, frames: int, limits: IntakeLimits) -> None:
    width, height = image.size
    if width < 1 or height < 1:
        raise invalid("The image has no pixels.")
    if width * height > limits.max_pixels:
        raise too_large(
            f"The image is {width}x{height} pixels; the limit is {limits.max_pixels} pixels."
        )
    if frames > limits.max_frames or width * height * frames > limits.max_animation_pixels:
        raise too_large(f"The animation has too many frames ({frames}) for its size.")


def frame_count(image: Image.Image, sniffed: str) -> int:
    # A JPEG's extra MPF pictures and a HEIC's other images are dropped, never decoded.
    if sniffed in (JPEG, HEIF):
        return 1
    return max(1, int(getattr(image, "n_frames", 1)))


def webp_is_lossless(source: IO[bytes]) -> bool:
    source.seek(12)
    head = source.read(4096)
    source.seek(0)
    return b"VP8L" in head


def reencode(
    image: Image.Image,
    source_image: Image.Image,
    sniffed: str,
    source: IO[bytes],
    out: HashingWriter,
    *,
    limits: IntakeLimits,
) -> str:
    """Write ``image`` (already upright) without metadata; returns its content type."""
    icc = source_image.info.get("icc_profile")
    transparency = source_image.info.get("transparency")
    extra: dict[str, Any] = {"icc_profile": icc} if icc else {}
    image.info = {}  # nothing from the source's info may be carried into the new file
    if sniffed == PNG:
        if transparency is not None:
            extra["transparency"] = transparency
        image.save(out, "PNG", compress_level=6, **extra)
        return "image/png"
    if sniffed == WEBP:
        lossless = webp_is_lossless(source)
        image.save(out, "WEBP", lossless=lossless, quality=limits.jpeg_quality, **extra)
        return "image/webp"
    if sniffed == HEIF and ("A" in image.getbands() or image.mode not in ("RGB", "L")):
        image.save(out, "PNG", compress_level=6, **extra)
        return "image/png"
    if sniffed == JPEG:
        # The source's own quantisation tables and chroma subsampling: its own quality,
        # and no loss ladder when the same photo is uploaded again and again.
        sampling = JpegImagePlugin.get_sampling(source_image)  # -1: not YCbCr
        if sampling >= 0:
            extra["subsampling"] = sampling
        image.save(out, "JPEG", qtables=source_image.quantization, **extra)
        return "image/jpeg"
    image.save(out, "JPEG", quality=limits.jpeg_quality, **extra)
    return "image/jpeg"


def upright_jpeg(
    image: Image.Image,
    sniffed: str,
    clean: CleanFile | None,
    turn: int,
    *,
    limits: IntakeLimits,
) -> dict[str, Any] | None:
    """A rotated JPEG turned upright in the DCT domain (:mod:`upload_svc.jpeg_transform`).

    The stripped file is what is turned, so the result carries only the allow-listed
    segments. It is then decoded once, in draft mode, like an upright file: that decode
    validates every byte and gives the pixels the renditions are made from. None when
    the transform cannot be done losslessly enough: the caller re-encodes.
    """
    if sniffed != JPEG or clean is None or turn == 1:
        return None
    turned = jpeg_transform.upright(clean.getvalue(), turn)
    if turned is None:
        return None
    result = Image.open(io.BytesIO(turned), formats=["JPEG"])
    wanted = jpeg_transform.upright_size(image.size, turn)
    if not jpeg_transform.acceptable_trim(wanted, result.size):
        return None
    width, height = result.size
    longest = max(limits.preview_long_side, limits.thumbnail_size)
    result.draft("RGB", draft_request((width, height), longest))
    result.load()
    return {
        "file": io.BytesIO(turned),
        "size": len(turned),
        "sha256": hashlib.sha256(turned).hexdigest(),
        "decoded": result,
        "width": width,
        "height": height,
        "content_type": "image/jpeg",
        "reencoded": False,
        "transformed": True,
    }


def process(
    image: Image.Image,
    sniffed: str,
    source: IO[bytes],
    spool: IO[bytes],
    *,
    limits: IntakeLimits,
    clean: CleanFile | None,
) -> dict[str, Any]:
    if image.format not in PILLOW_FORMATS[sniffed]:
        raise invalid()
    frames = frame_count(image, sniffed)
    check_size(image, frames, limits)
    width, height = image.size
    turn = exif.orientation(image) if frames == 1 else 1
    facts: dict[str, Any] = {
        "captured_at": exif.captured_at(image),
        "frames": frames,
        "profile": image.info.get("icc_profile"),
    }
    if clean is not None and turn == 1:
        if sniffed == JPEG:
            longest = max(limits.preview_long_side, limits.thumbnail_size)
            image.draft("RGB", draft_request((width, height), longest))
        image.load()  # every byte of image data is decoded here: the validation
        decoded = image.copy() if frames > 1 else image
        for index in range(1, frames):
            image.seek(index)
            image.load()
        facts.update(file=clean.reader(), size=clean.size, sha256=clean.sha256)
        content_type = SOURCE_TYPES[sniffed]
        reencoded = False
    elif (turned := upright_jpeg(image, sniffed, clean, turn, limits=limits)) is not None:
        facts.update(turned)
        return facts
    else:
        image.load()
        decoded = image.transpose(TRANSPOSE[turn]) if turn != 1 else image
        width, height = decoded.size
        writer = HashingWriter(spool)
        content_type = reencode(decoded, image, sniffed, source, writer, limits=limits)
        spool.seek(0)
        facts.update(file=spool, size=writer.size, sha256=writer.hash.hexdigest())
        reencoded = True
    facts.update(
        decoded=decoded,
        width=width,
        height=height,
        content_type=content_type,
        reencoded=reencoded,
        transformed=False,
    )
    return facts


@contextmanager
def accepted_image(
    source: IO[bytes], size: int, limits: IntakeLimits, spool_dir: Path | None = None
) -> Iterator[AcceptedImage]:
    """Validate and clean ``source``; what it yields is valid for the block only.

    The cleaned file may be read straight out of ``source``, and the decoded pixels
    belong to the open image, so both must outlive the block's use of them.
    """
    with ExitStack() as resources:
        output = resources.enter_context(
            tempfile.SpooledTemporaryFile(max_size=OUTPUT_IN_MEMORY, dir=spool_dir, prefix="clean-")
        )
        yield accept(source, size, limits, output, resources)


def accept(
    source: IO[bytes],
    size: int,
    limits: IntakeLimits,
    output: IO[bytes],
    resources: ExitStack,
) -> AcceptedImage:
    started = time.perf_counter()
    if size == 0:
        raise invalid("The image is empty.")
    head = source.read(SNIFF_BYTES)
    source.seek(0)
    sniffed = sniff(head)
    if sniffed is None:
        log.info("upload_refused", reason="unsupported", looks_like=describe(head))
        raise unsupported()
    if sniffed == HEIF:
        ensure_heif_support()
    try:
        clean = None
        if sniffed in STRIPPERS:
            # The file's structure is walked (and its clean version described) before
            # any of Pillow's parsers sees it: broken or absurd structures stop here.
            clean = CleanFile(source)
            STRIPPERS[sniffed](source, clean)
            source.seek(0)
        image = resources.enter_context(Image.open(source, formats=list(PILLOW_FORMATS[sniffed])))
        facts = process(image, sniffed, source, output, limits=limits, clean=clean)
    except ApiError:
        raise
    except (Image.DecompressionBombError, TooComplex) as error:
        raise too_large("The image has too many pixels, scans or parts.") from error
    except Exception as error:
        # Pillow, the codecs and the strippers (MalformedImage) raise many kinds of
        # errors on hostile input (OSError, ValueError, SyntaxError, struct.error,
        # EOFError...): all of them mean a broken file.
        log.info("upload_refused", reason="invalid", format=sniffed, error=type(error).__name__)
        raise invalid() from error
    PROCESSING_DURATION.labels("intake").observe(time.perf_counter() - started)
    return AcceptedImage(
        file=facts["file"],
        size=facts["size"],
        sha256=facts["sha256"],
        content_type=facts["content_type"],
        source_content_type=SOURCE_TYPES[sniffed],
        width=facts["width"],
        height=facts["height"],
        frames=facts["frames"],
        captured_at=facts["captured_at"],
        reencoded=facts["reencoded"],
        transformed=facts["transformed"],
        decoded=facts["decoded"],
        profile=facts["profile"],
    )


def renditions(accepted: AcceptedImage, limits: IntakeLimits) -> tuple[Rendition, Rendition]:
    """The preview and the thumbnail, from the pixels intake decoded (no second decode)."""
    return render_pair(
        accepted.decoded,
        preview_long_side=limits.preview_long_side,
        thumbnail_size=limits.thumbnail_size,
        quality=limits.rendition_quality,
        profile=accepted.profile,
    )
