"""Uploads as records and objects: create, read, render, delete.

An upload is the objects under ``<id>/`` in storage: ``original`` (the cleaned image),
and renditions such as ``thumbnail-320.jpg`` and ``preview-768.jpg``. The upload's
record (type, size, dimensions, sha256, times) is stored as metadata *of the original
object itself*, so one atomic write of one object is the moment an upload exists: there
is no window in which a record points at a missing image or the reverse. Renditions are
written after it; if any write fails, everything under the id is removed again, and a
rendition that is missing for any reason is simply made again on first use.

Ids are random (uuid4, 128 bits): never the client's file name, never guessable.
"""

from __future__ import annotations

import contextvars
import io
import json
import re
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from typing import Any, TypeVar

import structlog

from chassis.errors import ApiError
from upload_svc.derivatives import (
    CACHE_IMMUTABLE,
    RENDITION_TYPE,
    Rendition,
    cached_rendition,
    rendition_name,
)
from upload_svc.intake import AcceptedImage, IntakeLimits, accepted_image, renditions
from upload_svc.receiving import ReceivedBody
from upload_svc.settings import UploadSettings
from upload_svc.storage import ObjectInfo, ObjectNotFound, Storage, StoredObject

log = structlog.get_logger(__name__)

UPLOAD_ID = re.compile(r"^[0-9a-f]{32}$")
ORIGINAL = "original"
RECORD_METADATA = "record"
T = TypeVar("T")


def not_found() -> ApiError:
    return ApiError(404, "upload_not_found", "No upload with this id.")


def checked_id(upload_id: str) -> str:
    if not UPLOAD_ID.fullmatch(upload_id):
        raise not_found()
    return upload_id


def original_key(upload_id: str) -> str:
    return f"{checked_id(upload_id)}/{ORIGINAL}"


def record_of(info: ObjectInfo) -> dict[str, Any]:
    try:
        return json.loads(info.metadata[RECORD_METADATA])
    except (KeyError, ValueError) as error:
        # An object without a record was not written by this service.
        raise not_found() from error


def limits_from(settings: UploadSettings) -> IntakeLimits:
    return IntakeLimits(
        max_pixels=settings.max_image_pixels,
        max_frames=settings.max_animation_frames,
        max_animation_pixels=settings.max_animation_pixels,
        preview_long_side=settings.preview_long_side,
        thumbnail_size=settings.thumbnail_size,
        jpeg_quality=settings.jpeg_quality,
        rendition_quality=settings.rendition_quality,
    )


class Uploads:
    def __init__(
        self, storage: Storage, settings: UploadSettings, *, storage_threads: int = 8
    ) -> None:
        self.storage = storage
        self.settings = settings
        self.limits = limits_from(settings)
        # Decoding is CPU and memory: a few at a time per process, the rest wait.
        self.decode_slots = threading.BoundedSemaphore(settings.intake_concurrency)
        self.storage_threads = ThreadPoolExecutor(
            max_workers=storage_threads, thread_name_prefix="upload-storage"
        )

    @contextmanager
    def decode_slot(self) -> Iterator[None]:
        if not self.decode_slots.acquire(timeout=self.settings.intake_wait_seconds):
            raise ApiError(
                503,
                "busy",
                "Too many images are being processed; try again shortly.",
                headers={"Retry-After": "2"},
            )
        try:
            yield
        finally:
            self.decode_slots.release()

    def submit(self, call: Callable[..., T], *args: Any) -> Future[T]:
        """Run ``call`` on the storage threads, with this request's log context."""
        return self.storage_threads.submit(contextvars.copy_context().run, call, *args)

    def create(self, body: ReceivedBody) -> dict[str, Any]:
        """Validate, clean and store an image; the record once it is stored.

        The original is written on a storage thread while this one renders the preview
        and thumbnail, so the storage's latency hides behind the rendering.
        """
        with ExitStack() as cleanup:
            with self.decode_slot():
                accepted = cleanup.enter_context(
                    accepted_image(body.file, body.size, self.limits, self.settings.spool_dir)
                )
                upload_id = uuid.uuid4().hex
                record = {
                    "id": upload_id,
                    "content_type": accepted.content_type,
                    "size": accepted.size,
                    "width": accepted.width,
                    "height": accepted.height,
                    "sha256": accepted.sha256,
                    "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
                    "captured_at": accepted.captured_at,
                    "source_content_type": accepted.source_content_type,
                }
                storing = self.submit(self.put_original, upload_id, accepted, record)
                try:
                    made = renditions(accepted, self.limits)
                except BaseException:
                    wait([storing])
                    self.discard(upload_id)
                    raise
            try:
                storing.result()
                self.put_renditions(upload_id, made)
            except BaseException:
                self.discard(upload_id)
                raise
        log.info(
            "upload_stored",
            upload_id=upload_id,
            bytes_received=body.size,
            bytes_stored=accepted.size,
            content_type=accepted.content_type,
            source_content_type=accepted.source_content_type,
            reencoded=accepted.reencoded,
            frames=accepted.frames,
            sha256=accepted.sha256,
        )
        return record

    def put_original(self, upload_id: str, accepted: AcceptedImage, record: dict[str, Any]) -> None:
        """The write that makes the upload exist: the image with its record as metadata."""
        self.storage.put(
            original_key(upload_id),
            accepted.file,
            content_type=accepted.content_type,
            metadata={RECORD_METADATA: json.dumps(record, separators=(",", ":"))},
            cache_control=CACHE_IMMUTABLE,
        )

    def put_rendition(self, upload_id: str, rendition: Rendition) -> None:
        self.storage.put(
            f"{upload_id}/{rendition.key_name}",
            io.BytesIO(rendition.data),
            content_type=RENDITION_TYPE,
            cache_control=CACHE_IMMUTABLE,
            cache=True,
        )

    def put_renditions(self, upload_id: str, made: tuple[Rendition, ...]) -> None:
        """All renditions at once (each is a round trip to S3), after the original."""
        pending = [self.submit(self.put_rendition, upload_id, rendition) for rendition in made]
        wait(pending)
        for done in pending:
            done.result()

    def discard(self, upload_id: str) -> None:
        """Remove whatever a failed upload wrote; the original error is the answer."""
        try:
            self.storage.delete_prefix(upload_id)
        except Exception as error:
            log.warning("upload_not_discarded", upload_id=upload_id, error=str(error))

    def record(self, upload_id: str) -> dict[str, Any]:
        try:
            return record_of(self.storage.head(original_key(upload_id)))
        except ObjectNotFound as error:
            raise not_found() from error

    def original(self, upload_id: str) -> tuple[dict[str, Any], StoredObject]:
        try:
            stored = self.storage.get(original_key(upload_id))
        except ObjectNotFound as error:
            raise not_found() from error
        try:
            return record_of(stored.info), stored
        except ApiError:
            stored.body.close()
            raise

    def rendition_key(self, upload_id: str, name: str, long_side: int) -> str:
        """The rendition's key, making the rendition first when it is not stored yet."""
        key = f"{checked_id(upload_id)}/{rendition_name(name, long_side)}"
        if not self.storage.exists(key):
            self.rendition(upload_id, name, long_side)
        return key

    def rendition(self, upload_id: str, name: str, long_side: int) -> bytes:
        checked_id(upload_id)
        try:
            return cached_rendition(
                self.storage,
                upload_id,
                name,
                long_side,
                quality=self.settings.rendition_quality,
                guard=self.decode_slot,
            )
        except ObjectNotFound as error:
            raise not_found() from error

    def delete(self, upload_id: str) -> int:
        self.record(upload_id)
        removed = self.storage.delete_prefix(checked_id(upload_id))
        log.info("upload_deleted", upload_id=upload_id, objects=removed)
        return removed

    def presigned_url(self, key: str) -> str | None:
        return self.storage.presigned_url(key, self.settings.s3_presign_ttl_seconds)
