"""Turning a JPEG upright in the DCT domain (what ``jpegtran`` does), without re-encoding.

Decoding a rotated photo, rotating its pixels and encoding it again costs several times
the CPU of storing an upright one and loses quality each time. libjpeg-turbo rearranges
the compressed DCT coefficients instead: the quantisation tables, and so the quality,
stay the source's own, and the pixels are the source's pixels turned.

PyTurboJPEG 2.x uses ``tjTransform`` only for cropping and exposes no rotation or flip,
so the TurboJPEG C API (``libturbojpeg.so.0``, Debian's ``libturbojpeg0``) is called
through :mod:`ctypes`. When the library is missing, or it refuses a file, callers get
``None`` and keep the decode-and-re-encode path.

Edges: a JPEG is made of MCUs (8 or 16 px squares); a width or height that is not a
multiple of the MCU leaves a partial strip that, turned, would land on the wrong side.
``TJXOPT_TRIM`` drops that strip: the photo loses up to one MCU (at most 15 px) on the
affected edge, never gains garbage pixels. That is accepted only while the strip is at
most 1% of the side (a 4000x3000 photo loses 8 px of 3000); on a smaller picture it
would visibly crop, so :func:`upright` declines and the picture is re-encoded, exactly
sized, which on a small picture costs little.

Markers: the input is the already stripped file (:mod:`upload_svc.stripping`), whose
only markers are the allow-listed JFIF, Adobe and ICC profile segments, and those are
copied (the ICC profile defines the colours). EXIF, and with it the orientation, was
cut out before, so the result reads as upright everywhere.

Memory: the transform holds every DCT coefficient of the photo twice (source and
turned, about 6 bytes a pixel: 72 MB for 12 MP), allocated and freed on each call.
glibc hands blocks that big straight to ``mmap`` and unmaps them on free, so every
upload faulted in and zeroed ~19,000 fresh pages. :func:`keep_coefficient_memory`
raises glibc's mmap and trim thresholds once, when the library is loaded, so those
blocks come from, and go back to, a heap and are reused by the next transform.
Measured on a 4000x3000 portrait through one gunicorn worker (4 threads): 19,150 page
faults per upload before, 6,650 after (a request thread's heap is at most 64 MB, and
the part of the arrays past it is still mapped afresh; on the main thread, 0), and
about 50 ms less CPU per upload. The cost: a worker keeps that memory resident between
uploads (its peak is unchanged, the transform needs it anyway): 134 MB instead of
91 MB after ten portrait uploads.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import sys
from pathlib import Path

# tjTransform operations (turbojpeg.h)
TJXOP_HFLIP, TJXOP_VFLIP, TJXOP_TRANSPOSE, TJXOP_TRANSVERSE = 1, 2, 3, 4
TJXOP_ROT90, TJXOP_ROT180, TJXOP_ROT270 = 5, 6, 7
TJXOPT_TRIM = 2
MAX_TRIMMED_SHARE = 0.01
SWAPS_SIDES = frozenset({5, 6, 7, 8})
# mallopt(3) parameters (malloc.h), and the thresholds set: larger than a 12 MP photo's
# biggest coefficient array (24 MB of luma), within a thread arena's 64 MB heap.
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD = 48 * 1024 * 1024
TRIM_THRESHOLD = 128 * 1024 * 1024

# The operation that makes a photo of each EXIF orientation upright.
OPERATION_FOR_ORIENTATION = {
    2: TJXOP_HFLIP,
    3: TJXOP_ROT180,
    4: TJXOP_VFLIP,
    5: TJXOP_TRANSPOSE,
    6: TJXOP_ROT90,
    7: TJXOP_TRANSVERSE,
    8: TJXOP_ROT270,
}


class _Region(ctypes.Structure):
    _fields_ = [("x", ctypes.c_int), ("y", ctypes.c_int), ("w", ctypes.c_int), ("h", ctypes.c_int)]


class _Transform(ctypes.Structure):
    _fields_ = [
        ("r", _Region),
        ("op", ctypes.c_int),
        ("options", ctypes.c_int),
        ("data", ctypes.c_void_p),
        ("customFilter", ctypes.c_void_p),
    ]


@functools.cache
def library() -> ctypes.CDLL | None:
    """libturbojpeg, loaded once; None when the system does not have it."""
    # The system's (Debian's libturbojpeg0), else the copy the container image keeps in
    # the environment (its runtime stage installs no packages).
    candidates = [ctypes.util.find_library("turbojpeg"), "libturbojpeg.so.0"]
    candidates.append(str(Path(sys.prefix) / "lib" / "libturbojpeg.so.0"))
    found = None
    for name in filter(None, candidates):
        try:
            found = ctypes.CDLL(name)
            break
        except OSError:
            continue
    if found is None:
        return None
    keep_coefficient_memory()
    found.tjInitTransform.restype = ctypes.c_void_p
    found.tjInitTransform.argtypes = []
    found.tjTransform.restype = ctypes.c_int
    found.tjTransform.argtypes = [
        ctypes.c_void_p,
        ctypes.c_char_p,
        ctypes.c_ulong,
        ctypes.c_int,
        ctypes.POINTER(ctypes.POINTER(ctypes.c_ubyte)),
        ctypes.POINTER(ctypes.c_ulong),
        ctypes.POINTER(_Transform),
        ctypes.c_int,
    ]
    found.tjFree.restype = None
    found.tjFree.argtypes = [ctypes.POINTER(ctypes.c_ubyte)]
    found.tjDestroy.restype = ctypes.c_int
    found.tjDestroy.argtypes = [ctypes.c_void_p]
    return found


def keep_coefficient_memory() -> bool:
    """Let glibc reuse the transform's big blocks instead of mapping them afresh each time.

    False where the C library has no ``mallopt`` (musl) or refuses the values: the
    transform works the same, only paying the page faults.
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.restype = ctypes.c_int
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    # The trim threshold first: setting either one turns off glibc's own adjustment.
    return bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)) and bool(
        mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)
    )


def upright_size(size: tuple[int, int], orientation: int) -> tuple[int, int]:
    width, height = size
    return (height, width) if orientation in SWAPS_SIDES else (width, height)


def acceptable_trim(wanted: tuple[int, int], got: tuple[int, int]) -> bool:
    """Whether a trimmed result is close enough: under 16 px and 1% lost on each side."""
    return all(
        0 <= full - kept < 16 and full - kept <= full * MAX_TRIMMED_SHARE
        for full, kept in zip(wanted, got, strict=True)
    )


def upright(jpeg: bytes, orientation: int) -> bytes | None:
    """The JPEG turned upright losslessly, or None when it cannot be (use the old path).

    The caller checks the result's size with :func:`acceptable_trim`: only it knows the
    source's size without parsing the file again.
    """
    operation = OPERATION_FOR_ORIENTATION.get(orientation)
    lib = library()
    if operation is None or lib is None:
        return None
    handle = lib.tjInitTransform()
    if not handle:
        return None
    try:
        transform = _Transform(op=operation, options=TJXOPT_TRIM)
        output = ctypes.POINTER(ctypes.c_ubyte)()
        size = ctypes.c_ulong(0)
        status = lib.tjTransform(
            handle,
            jpeg,
            len(jpeg),
            1,
            ctypes.byref(output),
            ctypes.byref(size),
            ctypes.byref(transform),
            0,
        )
        try:
            if status != 0 or not output or size.value == 0:
                return None
            return ctypes.string_at(output, size.value)
        finally:
            if output:
                lib.tjFree(output)
    finally:
        lib.tjDestroy(handle)
