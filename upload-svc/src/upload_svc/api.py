"""upload-svc HTTP API.

Public (proxied by the gateway): ``POST /v1/uploads``, ``GET /v1/uploads/<id>``,
``GET /v1/uploads/<id>/thumbnail``, ``DELETE /v1/uploads/<id>``.
Internal (never routed by the gateway): ``GET /internal/uploads/<id>/preview`` for
ai-svc, ``/internal/uploads/<id>`` for the upload's record, and
``GET``/``DELETE /internal/owners/<uid>/uploads`` for library-svc (storage quota,
export, account deletion).

Every route but the owner routes acts for the caller the gateway established
(``X-IdeaSnap-User``): an upload someone else owns is a 404 like an id that does not
exist, never a 403, and an owned image is cacheable by the owner's client only.

``POST /v1/uploads`` takes a multipart ``image`` field (what the app sends) or the raw
image as the body (what the gateway's snap orchestration sends, as
``application/octet-stream``).

Stored images and renditions never change (a new photo is a new upload), so they are
served as immutable with a strong ETag; ``If-None-Match`` answers 304 without reading
the image. ``nosniff`` and a sandboxing CSP make sure a browser only ever treats the
bytes as the image type we checked.
"""

from __future__ import annotations

from typing import Any

import structlog
from flask import Blueprint, Response, current_app, jsonify, request
from flask.typing import ResponseReturnValue

from chassis.caller import USER_HEADER, current_caller
from chassis.errors import ApiError
from upload_svc.derivatives import PREVIEW, RENDITION_TYPE, THUMBNAIL
from upload_svc.metrics import UPLOAD_RECEIVED_BYTES, UPLOAD_REQUESTS
from upload_svc.receiving import received_image
from upload_svc.settings import UploadSettings
from upload_svc.storage import StorageUnavailable
from upload_svc.uploads import StoredUpload, Uploads

log = structlog.get_logger(__name__)
blueprint = Blueprint("uploads", __name__)
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; sandbox",
}
MIN_LONG_SIDE, MAX_LONG_SIDE = 64, 4096


def uploads() -> Uploads:
    return current_app.extensions["uploads"]


def settings() -> UploadSettings:
    return current_app.config["SETTINGS"]


def public_record(record: dict[str, Any]) -> dict[str, Any]:
    upload_id = record["id"]
    return {
        **record,
        "urls": {
            "image": f"/v1/uploads/{upload_id}",
            "thumbnail": f"/v1/uploads/{upload_id}/thumbnail",
        },
    }


def count_attempt(outcome: str, code: str) -> None:
    UPLOAD_REQUESTS.labels(outcome, code).inc()


@blueprint.post("/v1/uploads")
def create_upload() -> ResponseReturnValue:
    config = settings()
    try:
        with received_image(
            config.max_upload_bytes, config.spool_dir, UPLOAD_RECEIVED_BYTES.observe
        ) as body:
            record = uploads().create(body, current_caller())
    except ApiError as error:
        count_attempt("rejected" if error.status < 500 else "failed", error.code)
        raise
    except StorageUnavailable as error:
        count_attempt("failed", storage_error_code(error))
        raise
    except Exception:
        count_attempt("failed", "internal_error")
        raise
    count_attempt("accepted", "none")
    response = jsonify(public_record(record))
    response.status_code = 201
    response.headers["Location"] = f"/v1/uploads/{record['id']}"
    return response


def cacheable(response: Response, etag: str, upload: StoredUpload) -> Response:
    response.set_etag(etag)
    response.headers["Cache-Control"] = upload.cache_control
    response.headers.update(SECURITY_HEADERS)
    if upload.owner:
        # The same URL answers 404 to anyone else: a cache must not answer for them.
        response.vary.add(USER_HEADER)
    return response


def not_modified(etag: str, upload: StoredUpload) -> Response | None:
    if request.if_none_match and request.if_none_match.contains_weak(etag):
        return cacheable(Response(status=304), etag, upload)
    return None


def redirect_to(url: str) -> Response:
    """A redirect to a presigned URL, cacheable by the client for half its lifetime."""
    response = Response(status=307)
    response.headers["Location"] = url
    max_age = max(0, settings().s3_presign_ttl_seconds // 2)
    response.headers["Cache-Control"] = f"private, max-age={max_age}"
    return response


def presigning() -> bool:
    return settings().s3_presign_redirect and settings().storage_backend == "s3"


def rendition_etag(record: dict[str, Any], name: str, long_side: int) -> str:
    return f"{record['sha256'][:40]}-{name}-{long_side}"


@blueprint.get("/v1/uploads/<upload_id>")
def get_upload(upload_id: str) -> ResponseReturnValue:
    service = uploads()
    caller = current_caller()
    if request.if_none_match or presigning():
        upload = service.find(upload_id, caller)  # metadata only: no image bytes read
        if (unchanged := not_modified(upload.record["sha256"], upload)) is not None:
            return unchanged
        # Found for this caller first, so a presigned URL only ever goes to who may see it.
        if presigning() and (url := service.presigned_url(upload.original_key)):
            return redirect_to(url)
    upload, stored = service.original(upload_id, caller)
    response = Response(
        stored.body, mimetype=upload.record["content_type"], direct_passthrough=True
    )
    response.content_length = stored.size
    return cacheable(response, upload.record["sha256"], upload)


def rendition_response(upload_id: str, name: str, long_side: int) -> tuple[Response, StoredUpload]:
    service = uploads()
    upload = service.find(upload_id, current_caller())
    etag = rendition_etag(upload.record, name, long_side)
    if (unchanged := not_modified(etag, upload)) is not None:
        return unchanged, upload
    if name == THUMBNAIL and presigning():
        key = service.rendition_key(upload, name, long_side)
        if url := service.presigned_url(key):
            return redirect_to(url), upload
    data = service.rendition(upload, name, long_side)
    return cacheable(Response(data, mimetype=RENDITION_TYPE), etag, upload), upload


@blueprint.get("/v1/uploads/<upload_id>/thumbnail")
def get_thumbnail(upload_id: str) -> ResponseReturnValue:
    response, _ = rendition_response(upload_id, THUMBNAIL, settings().thumbnail_size)
    return response


@blueprint.delete("/v1/uploads/<upload_id>")
def delete_upload(upload_id: str) -> ResponseReturnValue:
    uploads().delete(upload_id, current_caller())
    return Response(status=204)


@blueprint.get("/internal/uploads/<upload_id>")
def get_record(upload_id: str) -> ResponseReturnValue:
    return jsonify(public_record(uploads().find(upload_id, current_caller()).record))


@blueprint.get("/internal/uploads/<upload_id>/preview")
def get_preview(upload_id: str) -> ResponseReturnValue:
    raw = request.args.get("long_side")
    long_side = settings().preview_long_side
    if raw is not None:
        try:
            long_side = int(raw)
        except ValueError:
            long_side = 0
        if not MIN_LONG_SIDE <= long_side <= MAX_LONG_SIDE:
            raise ApiError(
                400,
                "invalid_long_side",
                f"long_side must be a whole number from {MIN_LONG_SIDE} to {MAX_LONG_SIDE}.",
            )
    response, upload = rendition_response(upload_id, PREVIEW, long_side)
    response.headers["X-Upload-Sha256"] = upload.record["sha256"]
    if upload.record.get("captured_at"):
        response.headers["X-Upload-Captured-At"] = upload.record["captured_at"]
    return response


@blueprint.get("/internal/owners/<owner>/uploads")
def list_owned(owner: str) -> ResponseReturnValue:
    """Every upload of one person, with sizes, from one prefix listing (quota, export)."""
    listed = uploads().owned_by(owner)
    return jsonify(
        {
            "owner": owner,
            "count": len(listed),
            "size": sum(upload.size for upload in listed),
            "stored_bytes": sum(upload.stored_bytes for upload in listed),
            "uploads": [upload.public() for upload in listed],
        }
    )


@blueprint.delete("/internal/owners/<owner>/uploads")
def delete_owned(owner: str) -> ResponseReturnValue:
    """Every upload of one person and all derived from them (account deletion); repeatable."""
    deleted_uploads, deleted_objects = uploads().delete_owned_by(owner)
    return jsonify(
        {"owner": owner, "deleted_uploads": deleted_uploads, "deleted_objects": deleted_objects}
    )


def storage_error_code(error: StorageUnavailable) -> str:
    return "storage_timeout" if error.timed_out else "storage_unavailable"


def storage_error(error: StorageUnavailable) -> ApiError:
    """The storage failed: 503 (or 504 when it was too slow), never a bare 500."""
    log.warning("storage_unavailable", error=str(error), timed_out=error.timed_out)
    if error.timed_out:
        return ApiError(504, "storage_timeout", "The image storage did not answer in time.")
    return ApiError(
        503,
        "storage_unavailable",
        "The image storage is unavailable; try again shortly.",
        headers={"Retry-After": "5"},
    )
