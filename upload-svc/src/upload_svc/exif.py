"""The two facts read from a photo's EXIF before all of it is dropped.

The orientation is applied to the pixels (so the stored image looks the way the camera
meant it to without any metadata), and the capture time is kept in the upload's record
(it is useful to the ideas and not identifying on its own). Nothing else is read or
kept: not the GPS position, not the camera's make, model or serial number.
"""

from __future__ import annotations

import re
from datetime import datetime

from PIL import ExifTags, Image

EXIF_IFD = ExifTags.IFD.Exif
DATETIME_ORIGINAL = ExifTags.Base.DateTimeOriginal
OFFSET_TIME_ORIGINAL = ExifTags.Base.OffsetTimeOriginal
ORIENTATION = ExifTags.Base.Orientation
EXIF_DATETIME = re.compile(r"^(\d{4}):(\d{2}):(\d{2})[ T](\d{2}):(\d{2}):(\d{2})")
EXIF_OFFSET = re.compile(r"^[+-]\d{2}:\d{2}$")


def orientation(image: Image.Image) -> int:
    """The EXIF (or XMP) orientation, 1 to 8; 1 when absent or nonsense."""
    try:
        value = image.getexif().get(ORIENTATION, 1)
    except Exception:
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def captured_at(image: Image.Image) -> str | None:
    """EXIF DateTimeOriginal as ISO 8601, with its UTC offset when the camera wrote one.

    Cameras write local time without a zone; the offset tag (EXIF 2.31) is added only
    when present, so a value without one is the camera's local clock time.
    """
    try:
        details = image.getexif().get_ifd(EXIF_IFD)
    except Exception:
        return None
    raw = details.get(DATETIME_ORIGINAL)
    if not isinstance(raw, str):
        return None
    match = EXIF_DATETIME.match(raw.strip())
    if match is None:
        return None
    try:
        moment = datetime(*(int(part) for part in match.groups()))
    except ValueError:
        return None
    if not 1900 <= moment.year <= 2200:
        return None
    text = moment.isoformat(timespec="seconds")
    offset = details.get(OFFSET_TIME_ORIGINAL)
    if isinstance(offset, str) and EXIF_OFFSET.match(offset.strip()):
        text += offset.strip()
    return text
