"""upload-svc HTTP API.

Public (proxied by the gateway): ``POST /v1/uploads``, ``GET /v1/uploads/<id>``,
``GET /v1/uploads/<id>/thumbnail``, ``DELETE /v1/uploads/<id>``.
Internal (never routed by the gateway): ``GET /internal/uploads/<id>/preview`` for
ai-svc, and ``/internal/uploads/<id>`` for the upload's record.

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

from chassis.errors import ApiError
from upload_svc.derivatives import CACHE_IMMUTABLE, PREVIEW, RENDITION_TYPE, THUMBNAIL
from upload_svc.metrics import UPLOAD_RECEIVED_BYTES, UPLOAD_REQUESTS
from upload_svc.receiving import received_image
from upload_svc.settings import UploadSettings
from upload_svc.storage import StorageUnavailable
from upload_svc.uploads import Uploads, original_key

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
            record = uploads().create(body)
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


def cacheable(response: Response, etag: str) -> Response:
    response.set_etag(etag)
    response.headers["Cache-Control"] = CACHE_IMMUTABLE
    response.headers.update(SECURITY_HEADERS)
    return response


def not_modified(etag: str) -> Response | None:
    if request.if_none_match and request.if_none_match.contains_weak(etag):
        return cacheable(Response(status=304), etag)
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
    if request.if_none_match or presigning():
        record = service.record(upload_id)  # metadata only: no image bytes read
        if (unchanged := not_modified(record["sha256"])) is not None:
            return unchanged
        if presigning() and (url := service.presigned_url(original_key(upload_id))):
            return redirect_to(url)
    record, stored = service.original(upload_id)
    response = Response(stored.body, mimetype=record["content_type"], direct_passthrough=True)
    response.content_length = stored.size
    return cacheable(response, record["sha256"])


def rendition_response(
    upload_id: str, name: str, long_side: int
) -> tuple[Response, dict[str, Any]]:
    service = uploads()
    record = service.record(upload_id)
    etag = rendition_etag(record, name, long_side)
    if (unchanged := not_modified(etag)) is not None:
        return unchanged, record
    if name == THUMBNAIL and presigning():
        key = service.rendition_key(upload_id, name, long_side)
        if url := service.presigned_url(key):
            return redirect_to(url), record
    data = service.rendition(upload_id, name, long_side)
    return cacheable(Response(data, mimetype=RENDITION_TYPE), etag), record


@blueprint.get("/v1/uploads/<upload_id>/thumbnail")
def get_thumbnail(upload_id: str) -> ResponseReturnValue:
    response, _ = rendition_response(upload_id, THUMBNAIL, settings().thumbnail_size)
    return response


@blueprint.delete("/v1/uploads/<upload_id>")
def delete_upload(upload_id: str) -> ResponseReturnValue:
    uploads().delete(upload_id)
    return Response(status=204)


@blueprint.get("/internal/uploads/<upload_id>")
def get_record(upload_id: str) -> ResponseReturnValue:
    return jsonify(public_record(uploads().record(upload_id)))


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
    response, record = rendition_response(upload_id, PREVIEW, long_side)
    response.headers["X-Upload-Sha256"] = record["sha256"]
    if record.get("captured_at"):
        response.headers["X-Upload-Captured-At"] = record["captured_at"]
    return response


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
