"""Uploads as records and objects: create, read, render, delete, expire.

An upload is the objects under its prefix in storage: ``original`` (the cleaned image),
and renditions such as ``thumbnail-320.jpg`` and ``preview-768.jpg``. The upload's
record (type, size, dimensions, sha256, times, owner) is stored as metadata *of the
original object itself*, so one atomic write of one object is the moment an upload
exists: there is no window in which a record points at a missing image or the reverse.
Renditions are written after it; if any write fails, everything under the prefix is
removed again, and a rendition that is missing for any reason is simply made again on
first use.

Where an upload lives says whose it is:

- ``anonymous/<id>/...`` for an upload nobody signed in made. One prefix for all of
  them, so a bucket lifecycle rule (or the local sweep) can expire them by age.
- ``owners/<sha256 of the uid>/<id>/...`` for a signed-in person's. One prefix per
  person, so their uploads are listed (quota, export) or removed (account deletion)
  with a prefix listing, which S3 answers a thousand keys per request, with no index
  to keep in step. The uid is hashed because storage keys are lower case only (Firebase
  uids are case-sensitive, and a case-insensitive disk would merge two of them) and so
  bucket listings and access logs do not carry it; the record keeps the uid itself.

A caller can only address the uploads under their own prefix and the anonymous one, so
another person's upload is not found, exactly like an id that does not exist: ids are
never probed. Ids are random (uuid4, 128 bits): never the client's file name, never
guessable.
"""

from __future__ import annotations

import contextvars
import hashlib
import io
import json
import re
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import structlog

from chassis.caller import USER_PATTERN, Caller
from chassis.errors import ApiError
from upload_svc.derivatives import (
    CACHE_IMMUTABLE,
    CACHE_PRIVATE,
    RENDITION_TYPE,
    Rendition,
    cached_rendition,
    rendition_name,
)
from upload_svc.intake import AcceptedImage, IntakeLimits, accepted_image, renditions
from upload_svc.receiving import ReceivedBody
from upload_svc.settings import UploadSettings
from upload_svc.storage import ListedObject, ObjectInfo, ObjectNotFound, Storage, StoredObject

log = structlog.get_logger(__name__)

UPLOAD_ID = re.compile(r"^[0-9a-f]{32}$")
ORIGINAL = "original"
RECORD_METADATA = "record"
ANONYMOUS_SPACE = "anonymous"
OWNERS_SPACE = "owners"
T = TypeVar("T")


def not_found() -> ApiError:
    return ApiError(404, "upload_not_found", "No upload with this id.")


def checked_id(upload_id: str) -> str:
    if not UPLOAD_ID.fullmatch(upload_id):
        raise not_found()
    return upload_id


def checked_owner(owner: str) -> str:
    if not USER_PATTERN.fullmatch(owner):
        raise ApiError(400, "invalid_owner", "The owner is not a valid user id.")
    return owner


def owner_space(owner: str) -> str:
    """The prefix of one person's uploads."""
    return f"{OWNERS_SPACE}/{hashlib.sha256(owner.encode()).hexdigest()}"


def space_of(owner: str | None) -> str:
    return owner_space(owner) if owner else ANONYMOUS_SPACE


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


def cache_control_for(owner: str | None) -> str:
    """Anyone may keep a copy of an anonymous image; only the owner's own client of theirs."""
    return CACHE_PRIVATE if owner else CACHE_IMMUTABLE


@dataclass(frozen=True)
class StoredUpload:
    """An upload as found for a caller: where its objects are, and its record."""

    prefix: str
    record: dict[str, Any]

    @property
    def id(self) -> str:
        return self.record["id"]

    @property
    def owner(self) -> str | None:
        return self.record.get("owner")

    @property
    def original_key(self) -> str:
        return f"{self.prefix}/{ORIGINAL}"

    @property
    def cache_control(self) -> str:
        return cache_control_for(self.owner)


@dataclass(frozen=True)
class ListedUpload:
    """One upload as a prefix listing shows it (no record read)."""

    id: str
    size: int
    """Bytes of the stored image (the record's ``size``)."""
    stored_bytes: int
    """Bytes of everything kept for it: the image and its renditions."""
    stored_at: datetime

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "size": self.size,
            "stored_bytes": self.stored_bytes,
            "stored_at": self.stored_at.isoformat(timespec="seconds"),
        }


def grouped(space: str, objects: list[ListedObject]) -> dict[str, list[ListedObject]]:
    """Listed objects by upload id (``<space>/<id>/<name>``)."""
    groups: dict[str, list[ListedObject]] = {}
    depth = space.count("/") + 1
    for item in objects:
        parts = item.key.split("/")
        if len(parts) == depth + 2 and UPLOAD_ID.fullmatch(parts[depth]):
            groups.setdefault(parts[depth], []).append(item)
    return groups


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

    def create(self, body: ReceivedBody, caller: Caller) -> dict[str, Any]:
        """Validate, clean and store an image for ``caller``; the record once it is stored.

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
                    "owner": caller.user,
                }
                upload = StoredUpload(f"{space_of(caller.user)}/{upload_id}", record)
                storing = self.submit(self.put_original, upload, accepted)
                try:
                    made = renditions(accepted, self.limits)
                except BaseException:
                    wait([storing])
                    self.discard(upload)
                    raise
            try:
                storing.result()
                self.put_renditions(upload, made)
            except BaseException:
                self.discard(upload)
                raise
        log.info(
            "upload_stored",
            upload_id=upload_id,
            owned=caller.signed_in,
            bytes_received=body.size,
            bytes_stored=accepted.size,
            content_type=accepted.content_type,
            source_content_type=accepted.source_content_type,
            reencoded=accepted.reencoded,
            transformed=accepted.transformed,
            frames=accepted.frames,
            sha256=accepted.sha256,
        )
        return record

    def put_original(self, upload: StoredUpload, accepted: AcceptedImage) -> None:
        """The write that makes the upload exist: the image with its record as metadata."""
        self.storage.put(
            upload.original_key,
            accepted.file,
            content_type=accepted.content_type,
            metadata={RECORD_METADATA: json.dumps(upload.record, separators=(",", ":"))},
            cache_control=upload.cache_control,
        )

    def put_rendition(self, upload: StoredUpload, rendition: Rendition) -> None:
        self.storage.put(
            f"{upload.prefix}/{rendition.key_name}",
            io.BytesIO(rendition.data),
            content_type=RENDITION_TYPE,
            cache_control=upload.cache_control,
            cache=True,
        )

    def put_renditions(self, upload: StoredUpload, made: tuple[Rendition, ...]) -> None:
        """All renditions at once (each is a round trip to S3), after the original."""
        pending = [self.submit(self.put_rendition, upload, rendition) for rendition in made]
        wait(pending)
        for done in pending:
            done.result()

    def discard(self, upload: StoredUpload) -> None:
        """Remove whatever a failed upload wrote; the original error is the answer."""
        try:
            self.storage.delete_prefix(upload.prefix)
        except Exception as error:
            log.warning("upload_not_discarded", upload_id=upload.id, error=str(error))

    @staticmethod
    def places(upload_id: str, caller: Caller) -> list[tuple[str, str | None]]:
        """Where ``caller`` may find ``upload_id``, and who must own what is found there.

        Their own uploads first; anonymous uploads are anyone's who holds the id.
        """
        checked_id(upload_id)
        places: list[tuple[str, str | None]] = []
        if caller.user:
            places.append((f"{owner_space(caller.user)}/{upload_id}", caller.user))
        places.append((f"{ANONYMOUS_SPACE}/{upload_id}", None))
        return places

    def find(self, upload_id: str, caller: Caller) -> StoredUpload:
        """The upload as ``caller`` may see it (metadata only: no image bytes read)."""
        for prefix, owner in self.places(upload_id, caller):
            try:
                info = self.storage.head(f"{prefix}/{ORIGINAL}")
            except ObjectNotFound:
                continue
            upload = StoredUpload(prefix, record_of(info))
            if upload.owner == owner and upload.id == upload_id:
                return upload
        raise not_found()

    def original(self, upload_id: str, caller: Caller) -> tuple[StoredUpload, StoredObject]:
        """The upload and its image, in one read per place looked at."""
        for prefix, owner in self.places(upload_id, caller):
            try:
                stored = self.storage.get(f"{prefix}/{ORIGINAL}")
            except ObjectNotFound:
                continue
            try:
                upload = StoredUpload(prefix, record_of(stored.info))
            except ApiError:
                stored.body.close()
                raise
            if upload.owner == owner and upload.id == upload_id:
                return upload, stored
            stored.body.close()
        raise not_found()

    def rendition_key(self, upload: StoredUpload, name: str, long_side: int) -> str:
        """The rendition's key, making the rendition first when it is not stored yet."""
        key = f"{upload.prefix}/{rendition_name(name, long_side)}"
        if not self.storage.exists(key):
            self.rendition(upload, name, long_side)
        return key

    def rendition(self, upload: StoredUpload, name: str, long_side: int) -> bytes:
        try:
            return cached_rendition(
                self.storage,
                upload.prefix,
                name,
                long_side,
                quality=self.settings.rendition_quality,
                guard=self.decode_slot,
                cache_control=upload.cache_control,
            )
        except ObjectNotFound as error:
            raise not_found() from error

    def delete(self, upload_id: str, caller: Caller) -> int:
        upload = self.find(upload_id, caller)
        removed = self.storage.delete_prefix(upload.prefix)
        log.info("upload_deleted", upload_id=upload_id, objects=removed)
        return removed

    def presigned_url(self, key: str) -> str | None:
        return self.storage.presigned_url(key, self.settings.s3_presign_ttl_seconds)

    def listed(self, space: str) -> list[ListedUpload]:
        """The uploads under ``space`` from one prefix listing; those without an image
        (a failed write, an expired original) are left out."""
        found = []
        for upload_id, objects in grouped(space, self.storage.list_prefix(space)).items():
            original = next((item for item in objects if item.key.endswith(f"/{ORIGINAL}")), None)
            if original is None:
                continue
            found.append(
                ListedUpload(
                    id=upload_id,
                    size=original.size,
                    stored_bytes=sum(item.size for item in objects),
                    stored_at=original.modified,
                )
            )
        return sorted(found, key=lambda upload: (upload.stored_at, upload.id), reverse=True)

    def owned_by(self, owner: str) -> list[ListedUpload]:
        return self.listed(owner_space(checked_owner(owner)))

    def delete_owned_by(self, owner: str) -> tuple[int, int]:
        """Remove every upload of ``owner`` and all derived from them: (uploads, objects).

        Safe to repeat: what is already gone is not counted, and an upload that was
        being stored meanwhile is removed by the next call.
        """
        space = owner_space(checked_owner(owner))
        uploads = len(grouped(space, self.storage.list_prefix(space)))
        objects = self.storage.delete_prefix(space)
        log.info("owner_uploads_deleted", uploads=uploads, objects=objects)
        return uploads, objects

    def expire_anonymous(self, now: datetime | None = None) -> int:
        """Remove the anonymous uploads stored more than the retention ago; how many.

        Age is the original's write time, as for a bucket lifecycle rule, so local disk
        and S3 expire the same uploads. Renditions go with their upload; an id whose
        original is already gone goes once its newest object is past the retention.
        """
        now = now or datetime.now(UTC)
        cutoff = now - timedelta(days=self.settings.anonymous_retention_days)
        expired = 0
        listing = self.storage.list_prefix(ANONYMOUS_SPACE)
        for upload_id, objects in grouped(ANONYMOUS_SPACE, listing).items():
            original = next((item for item in objects if item.key.endswith(f"/{ORIGINAL}")), None)
            written = original.modified if original else max(item.modified for item in objects)
            if written >= cutoff:
                continue
            self.storage.delete_prefix(f"{ANONYMOUS_SPACE}/{upload_id}")
            expired += 1
        if expired:
            log.info("anonymous_uploads_expired", uploads=expired, cutoff=cutoff.isoformat())
        return expired
