"""upload-svc HTTP API.

Public (proxied by the gateway): ``POST /v1/uploads``, ``GET /v1/uploads/<id>``,
``GET /v1/uploads/<id>/thumbnail``, ``DELETE /v1/uploads/<id>``.
Internal (never routed by the gateway): ``GET /internal/uploads/<id>/preview`` for
ai-svc, and ``/internal/uploads/<id>`` for the upload's record.

``POST /v1/uploads`` takes a multipart ``image`` field (what the app sends) or the raw
image as the body (what the gateway's snap orchestration sends).
"""

from __future__ import annotations

import io
import json
import re
import uuid
from datetime import UTC, datetime
from typing import Any

import structlog
from flask import Blueprint, Response, current_app, jsonify, request
from flask.typing import ResponseReturnValue

from chassis.errors import ApiError
from upload_svc.derivatives import derived
from upload_svc.intake import accept_image
from upload_svc.settings import UploadSettings
from upload_svc.storage import ObjectNotFound, Storage

log = structlog.get_logger(__name__)
blueprint = Blueprint("uploads", __name__)
UPLOAD_ID = re.compile(r"^[0-9a-f]{32}$")
CACHE_IMMUTABLE = "public, max-age=86400, immutable"


def storage() -> Storage:
    return current_app.extensions["storage"]


def settings() -> UploadSettings:
    return current_app.config["SETTINGS"]


def checked_id(upload_id: str) -> str:
    if not UPLOAD_ID.match(upload_id):
        raise ApiError(404, "upload_not_found", "No upload with this id.")
    return upload_id


def load_record(upload_id: str) -> dict[str, Any]:
    try:
        return json.loads(storage().read(f"{checked_id(upload_id)}/meta.json"))
    except ObjectNotFound as error:
        raise ApiError(404, "upload_not_found", "No upload with this id.") from error


def public_record(record: dict[str, Any]) -> dict[str, Any]:
    upload_id = record["id"]
    return {
        **record,
        "urls": {
            "image": f"/v1/uploads/{upload_id}",
            "thumbnail": f"/v1/uploads/{upload_id}/thumbnail",
        },
    }


def image_stream() -> Any:
    if request.mimetype == "multipart/form-data":
        file = request.files.get("image")
        if file is None:
            raise ApiError(400, "missing_image", "Send the image in a multipart field 'image'.")
        return file.stream
    return request.stream


@blueprint.post("/v1/uploads")
def create_upload() -> ResponseReturnValue:
    config = settings()
    accepted = accept_image(
        image_stream(), max_bytes=config.max_upload_bytes, max_pixels=config.max_image_pixels
    )
    upload_id = uuid.uuid4().hex
    record = {
        "id": upload_id,
        "content_type": accepted.content_type,
        "size": len(accepted.data),
        "width": accepted.width,
        "height": accepted.height,
        "sha256": accepted.sha256,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    store = storage()
    try:
        store.put(f"{upload_id}/original", io.BytesIO(accepted.data), accepted.content_type)
        store.put(
            f"{upload_id}/meta.json", io.BytesIO(json.dumps(record).encode()), "application/json"
        )
    except BaseException:
        store.delete_prefix(upload_id)
        raise
    log.info("upload_stored", upload_id=upload_id, bytes=record["size"], sha256=accepted.sha256)
    response = jsonify(public_record(record))
    response.status_code = 201
    response.headers["Location"] = f"/v1/uploads/{upload_id}"
    return response


def image_response(
    data: bytes | None, content_type: str, etag: str, chunks: Any = None
) -> Response:
    if request.if_none_match.contains(etag):
        response = Response(status=304)
    else:
        response = Response(chunks if chunks is not None else data, mimetype=content_type)
    response.set_etag(etag)
    response.headers["Cache-Control"] = CACHE_IMMUTABLE
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


@blueprint.get("/v1/uploads/<upload_id>")
def get_upload(upload_id: str) -> ResponseReturnValue:
    record = load_record(upload_id)
    stored = storage().get(f"{upload_id}/original")
    response = image_response(None, record["content_type"], record["sha256"], stored.chunks)
    if response.status_code == 200:
        response.content_length = stored.size
    return response


@blueprint.get("/v1/uploads/<upload_id>/thumbnail")
def get_thumbnail(upload_id: str) -> ResponseReturnValue:
    record = load_record(upload_id)
    size = settings().thumbnail_size
    data = derived(storage(), upload_id, "thumbnail", size)
    return image_response(data, "image/jpeg", f"{record['sha256'][:32]}-t{size}")


@blueprint.delete("/v1/uploads/<upload_id>")
def delete_upload(upload_id: str) -> ResponseReturnValue:
    load_record(upload_id)
    storage().delete_prefix(upload_id)
    log.info("upload_deleted", upload_id=upload_id)
    return Response(status=204)


@blueprint.get("/internal/uploads/<upload_id>")
def get_record(upload_id: str) -> ResponseReturnValue:
    return jsonify(public_record(load_record(upload_id)))


@blueprint.get("/internal/uploads/<upload_id>/preview")
def get_preview(upload_id: str) -> ResponseReturnValue:
    record = load_record(upload_id)
    long_side = request.args.get("long_side", type=int) or settings().preview_long_side
    if not 64 <= long_side <= 4096:
        raise ApiError(400, "invalid_long_side", "long_side must be between 64 and 4096.")
    data = derived(storage(), upload_id, "preview", long_side)
    response = image_response(data, "image/jpeg", f"{record['sha256'][:32]}-p{long_side}")
    response.headers["X-Upload-Sha256"] = record["sha256"]
    return response
