"""``POST /v1/snaps``: store the photo, then ask for ideas about it, in one call.

The image is parsed out of the multipart body into a spooled temporary file (on disk
past a small threshold) and streamed to upload-svc; the preset fields go to ai-svc with
the new upload id. If the ideas step fails, the upload is deleted again, so a failed
snap leaves nothing behind and the app can simply retry it.
"""

from __future__ import annotations

from typing import Any

import structlog
from flask import request

from chassis.errors import ApiError
from chassis.outgoing import ServiceClient
from gateway.settings import GatewaySettings

log = structlog.get_logger(__name__)
PRESET_FIELDS = ("template", "tone", "language")


def preset_fields() -> dict[str, Any]:
    fields: dict[str, Any] = {
        name: request.form[name] for name in PRESET_FIELDS if request.form.get(name)
    }
    raw_count = request.form.get("count")
    if raw_count:
        try:
            fields["count"] = int(raw_count)
        except ValueError:
            raise ApiError(422, "invalid_request", "count must be a whole number.") from None
    return fields


def json_or_error(response: Any) -> dict[str, Any]:
    try:
        payload = response.json()
    except ValueError:
        payload = None
    if response.status_code >= 400:
        error = (payload or {}).get("error") if isinstance(payload, dict) else None
        if response.status_code >= 500 and not error:
            raise ApiError(502, "bad_gateway", "A backing service failed.")
        if not error:
            raise ApiError(502, "bad_gateway", "A backing service gave an unexpected answer.")
        raise ApiError(response.status_code, error["code"], error["message"])
    if not isinstance(payload, dict):
        raise ApiError(502, "bad_gateway", "A backing service gave an unexpected answer.")
    return payload


def create_snap(
    uploads: ServiceClient, ai: ServiceClient, settings: GatewaySettings
) -> dict[str, Any]:
    if request.mimetype != "multipart/form-data":
        raise ApiError(415, "unsupported_media_type", "Send multipart/form-data.")
    image = request.files.get("image")
    if image is None:
        raise ApiError(400, "missing_image", "Send the image in a multipart field 'image'.")
    fields = preset_fields()
    upload = json_or_error(
        uploads.request(
            "POST",
            "/v1/uploads",
            data=image.stream,
            headers={"Content-Type": "application/octet-stream"},
            timeout=(uploads.timeout[0], settings.upload_read_timeout_seconds),
        )
    )
    try:
        ideas = json_or_error(
            ai.request(
                "POST",
                "/v1/ideas",
                json={"upload_id": upload["id"], **fields},
                timeout=(ai.timeout[0], settings.ai_read_timeout_seconds),
            )
        )
    except ApiError:
        discard_upload(uploads, upload["id"])
        raise
    return {"upload": upload, **ideas}


def discard_upload(uploads: ServiceClient, upload_id: str) -> None:
    try:
        uploads.request("DELETE", f"/v1/uploads/{upload_id}")
    except ApiError:
        log.warning("snap_upload_not_discarded", upload_id=upload_id)
