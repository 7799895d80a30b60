"""Images derived from a stored upload: the app's thumbnail and the model's preview.

Both are JPEG, made on first use and cached next to the original, so the cost is paid
once per upload. JPEG ``draft`` lets the decoder scale by 1/2, 1/4 or 1/8 while
decoding, so a small derivative never decodes every pixel of a large photo.
"""

from __future__ import annotations

import io

from PIL import Image

from upload_svc.storage import ObjectNotFound, Storage


def render_jpeg(original: bytes, long_side: int, quality: int = 85) -> bytes:
    with Image.open(io.BytesIO(original)) as source:
        if source.format == "JPEG":
            source.draft("RGB", (long_side, long_side))
        image = source.convert("RGB")
    image.thumbnail((long_side, long_side), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=quality, optimize=True)
    return out.getvalue()


def derived(storage: Storage, upload_id: str, name: str, long_side: int) -> bytes:
    key = f"{upload_id}/{name}-{long_side}.jpg"
    try:
        return storage.read(key)
    except ObjectNotFound:
        pass
    data = render_jpeg(storage.read(f"{upload_id}/original"), long_side)
    storage.put(key, io.BytesIO(data), "image/jpeg")
    return data
