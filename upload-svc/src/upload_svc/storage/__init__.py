"""Where uploads live: one small interface, two backends (a directory, an S3 bucket)."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

import structlog

from upload_svc.settings import UploadSettings
from upload_svc.storage.base import (
    ListedObject,
    ObjectInfo,
    ObjectNotFound,
    ObjectStream,
    Storage,
    StorageUnavailable,
    StoredObject,
)
from upload_svc.storage.instrumented import InstrumentedStorage

if TYPE_CHECKING:
    from upload_svc.storage.local import LocalStorage

log = structlog.get_logger(__name__)

__all__ = [
    "InstrumentedStorage",
    "ListedObject",
    "ObjectInfo",
    "ObjectNotFound",
    "ObjectStream",
    "Storage",
    "StorageUnavailable",
    "StoredObject",
    "build_storage",
]


def build_storage(settings: UploadSettings, *, pool_size: int = 32) -> Storage:
    """The configured backend, instrumented."""
    if settings.storage_backend == "s3":
        from upload_svc.storage.s3 import S3Storage

        return InstrumentedStorage(S3Storage(settings, pool_size=pool_size))
    from upload_svc.storage.local import LocalStorage

    local = LocalStorage(settings.storage_dir)
    # What a crash left behind is swept in the background: a large store must not
    # delay the worker's start.
    threading.Thread(target=sweep, args=(local,), name="storage-sweep", daemon=True).start()
    return InstrumentedStorage(local)


def sweep(local: LocalStorage) -> None:
    try:
        removed = local.sweep_stale()
    except OSError as error:
        log.warning("storage_sweep_failed", error=str(error))
        return
    if removed:
        log.info("storage_swept", removed=removed)
