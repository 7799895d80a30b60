"""Images derived from an upload: the app's thumbnail and the model's preview.

Both are small sRGB JPEGs. At upload time they are made from pixels intake already
decoded (for a JPEG, decoded at 1/2, 1/4 or 1/8 scale by the decoder itself: "draft"
mode never produces the full-size pixels), and stored next to the original. Any other
size (``?long_side=``), or a rendition that is missing, is made on first use from the
stored original, again with draft mode, and cached, so the cost is paid once.

Colour: a photo with an ICC profile (Display P3 from phones, CMYK print profiles) is
converted to sRGB, which is what a model and most image views assume. Transparency is
laid over white, 16-bit samples are scaled to 8 bits.
"""

from __future__ import annotations

import functools
import io
import math
import tempfile
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import IO

import structlog
from PIL import Image, ImageCms

from upload_svc.metrics import PROCESSING_DURATION
from upload_svc.storage import ObjectNotFound, Storage

log = structlog.get_logger(__name__)

THUMBNAIL = "thumbnail"
PREVIEW = "preview"
RENDITION_TYPE = "image/jpeg"
CACHE_IMMUTABLE = "public, max-age=86400, immutable"
CACHE_PRIVATE = "private, max-age=86400, immutable"
RESIZABLE_MODES = frozenset({"RGB", "RGBA", "L", "LA"})
SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I"})
SPOOL_IN_MEMORY = 1024 * 1024
# Optimised Huffman tables (a second pass over the coefficients) are worth their CPU only
# for what is fetched again and again: the thumbnail the app shows, about 4% smaller. A
# preview is read in the cluster by ai-svc and sent to the model, which counts image
# tiles, not bytes: its standard tables cost about 3% more bytes on those hops and save
# half of its encoding CPU.
OPTIMISED_CODING = frozenset({THUMBNAIL})


@dataclass(frozen=True)
class Rendition:
    name: str
    long_side: int
    data: bytes

    @property
    def key_name(self) -> str:
        return rendition_name(self.name, self.long_side)


def rendition_name(name: str, long_side: int) -> str:
    return f"{name}-{long_side}.jpg"


def target_size(size: tuple[int, int], long_side: int) -> tuple[int, int]:
    """``size`` scaled to fit ``long_side`` (never enlarged)."""
    width, height = size
    scale = min(1.0, long_side / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def draft_request(size: tuple[int, int], long_side: int) -> tuple[int, int]:
    """The size to ask JPEG draft mode for: it picks the smallest scale at least this big."""
    width, height = size
    scale = min(1.0, long_side / max(width, height))
    return max(1, math.ceil(width * scale)), max(1, math.ceil(height * scale))


@functools.lru_cache(maxsize=16)
def srgb_transform(profile: bytes, mode: str) -> ImageCms.ImageCmsTransform | None:
    """A cached transform from ``profile`` to sRGB, or None when the profile is unusable.

    NOCACHE makes the transform safe to share between request threads.
    """
    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(profile))
        return ImageCms.buildTransform(
            source,
            ImageCms.createProfile("sRGB"),
            mode,
            "RGB",
            renderingIntent=ImageCms.Intent.PERCEPTUAL,
            flags=ImageCms.Flags.NOCACHE,
        )
    except (ImageCms.PyCMSError, OSError, ValueError):
        return None


def resizable(image: Image.Image) -> Image.Image:
    """The image in a mode Pillow resamples well: 8-bit RGB/L, with alpha if it has any."""
    if image.mode in RESIZABLE_MODES:
        return image
    if image.mode in SIXTEEN_BIT_MODES:
        return image.convert("I").point(lambda value: value * (1 / 256)).convert("L")
    if image.mode == "CMYK":
        transform = srgb_transform(image.info.get("icc_profile") or b"", "CMYK")
        if transform is not None:
            return ImageCms.applyTransform(image, transform) or image.convert("RGB")
        return image.convert("RGB")
    if image.mode == "1":
        return image.convert("L")
    has_alpha = "A" in image.getbands() or "transparency" in image.info
    return image.convert("RGBA" if has_alpha else "RGB")


def flattened(image: Image.Image) -> Image.Image:
    """Alpha laid over white: JPEG has no transparency."""
    if image.mode not in ("RGBA", "LA"):
        return image
    base = Image.new("RGB", image.size, (255, 255, 255))
    base.paste(image.convert("RGBA"), mask=image.getchannel("A"))
    return base


def in_srgb(image: Image.Image, profile: bytes | None) -> Image.Image:
    if not profile or image.mode not in ("RGB", "L"):
        return image
    transform = srgb_transform(profile, image.mode)
    if transform is None:
        return image
    return ImageCms.applyTransform(image, transform) or image


def scaled(image: Image.Image, long_side: int) -> Image.Image:
    """Downscaled with an antialiasing filter; whole factors first by box averaging.

    ``reducing_gap=1`` averages blocks of pixels for the integer part of the ratio
    (cheap, and an exact area average), then a Hamming filter (as sharp as bicubic
    at these ratios, at the cost of bilinear) resamples the last stretch.
    """
    size = target_size(image.size, long_side)
    if size == image.size:
        return image
    return image.resize(size, Image.Resampling.HAMMING, reducing_gap=1.0)


def encode_jpeg(image: Image.Image, quality: int, name: str) -> bytes:
    """Baseline JPEG; Huffman tables optimised for the renditions in ``OPTIMISED_CODING``."""
    out = io.BytesIO()
    image.save(out, "JPEG", quality=quality, optimize=name in OPTIMISED_CODING)
    return out.getvalue()


def render_pair(
    image: Image.Image,
    *,
    preview_long_side: int,
    thumbnail_size: int,
    quality: int,
    profile: bytes | None,
) -> tuple[Rendition, Rendition]:
    """Preview and thumbnail from one decoded image; the smaller is made from the larger."""
    base = resizable(image)
    profile = profile if image.mode == base.mode else None  # CMYK was converted already
    sizes = {PREVIEW: preview_long_side, THUMBNAIL: thumbnail_size}
    order = sorted(sizes, key=sizes.__getitem__, reverse=True)
    made: dict[str, Rendition] = {}
    source = base
    for name in order:
        started = time.perf_counter()
        source = scaled(source, sizes[name])
        data = encode_jpeg(in_srgb(flattened(source), profile), quality, name)
        made[name] = Rendition(name, sizes[name], data)
        PROCESSING_DURATION.labels(name).observe(time.perf_counter() - started)
    return made[PREVIEW], made[THUMBNAIL]


def render_from_original(original: IO[bytes], name: str, long_side: int, quality: int) -> bytes:
    """One rendition from the stored original (already oriented, already stripped)."""
    started = time.perf_counter()
    with Image.open(original) as source:
        if source.format in ("JPEG", "MPO"):
            source.draft("RGB", draft_request(source.size, long_side))
        source.load()
        profile = source.info.get("icc_profile")
        base = resizable(source)
        profile = profile if source.mode == base.mode else None
        data = encode_jpeg(in_srgb(flattened(scaled(base, long_side)), profile), quality, name)
    PROCESSING_DURATION.labels(name).observe(time.perf_counter() - started)
    return data


def cached_rendition(
    storage: Storage,
    prefix: str,
    name: str,
    long_side: int,
    *,
    quality: int,
    render: Callable[[IO[bytes], str, int, int], bytes] = render_from_original,
    guard: Callable[[], AbstractContextManager[object]] = nullcontext,
    cache_control: str = CACHE_IMMUTABLE,
) -> bytes:
    """The rendition of the upload under ``prefix``, from storage, made and stored on first use.

    The original is copied to a spooled temporary file (on disk past a small size), not
    into memory, before it is decoded; ``guard`` wraps the decoding (a concurrency
    limit), never a cache hit.
    """
    key = f"{prefix}/{rendition_name(name, long_side)}"
    try:
        return storage.read(key)
    except ObjectNotFound:
        pass
    original_key = f"{prefix}/original"
    stored = storage.get(original_key)
    with tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY) as spool:
        try:
            for chunk in stored.body:
                spool.write(chunk)
        finally:
            stored.body.close()
        spool.seek(0)
        with guard():
            data = render(spool, name, long_side, quality)
    storage.put(
        key,
        io.BytesIO(data),
        content_type=RENDITION_TYPE,
        cache_control=cache_control,
        cache=True,
    )
    if not storage.exists(original_key):
        # Deleted while this was being made: do not leave the rendition behind.
        storage.delete(key)
        raise ObjectNotFound(original_key)
    log.info(
        "rendition_cached", upload_id=prefix.rsplit("/", 1)[-1], rendition=name, long_side=long_side
    )
    return data
