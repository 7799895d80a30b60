"""``POST /v1/snaps``: store the photo, then ask for ideas about it, in one call.

The multipart body is parsed as it arrives: the image part goes to a temporary file that
stays in memory only up to 64 KiB (disk past that), so a 10 MB photo costs the gateway
no more memory than a small one. The file is then streamed to upload-svc as the raw
body, with its length, and the preset fields go to ai-svc with the new upload id. If
the ideas step fails, the upload is deleted again, so a failed snap leaves nothing
behind and the app can simply retry it.

For a signed-in person library-svc takes part twice. Before the upload, admission: may
they keep one more snap of this many bytes (their tier's history size and storage
quota)? A refusal (403 ``history_limit_reached`` / ``storage_quota_exceeded``, 410
``account_deleted``) is relayed as it is and nothing is stored; library-svc unreachable
is 503 (no snap is taken that could not be kept). After the ideas, the snap is recorded
in the history (idempotent per upload id, so it is retried once at once). If recording
still fails the person keeps their answer (they paid an AI call for it) with
``snap_id: null``; the failure is logged (``snap_not_recorded``) and counted in
``gateway_snap_records_total{outcome="failed"}``. Anonymous snaps never reach library-svc.

``gateway_snaps_total{stage}`` follows the funnel: received, stored, succeeded.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable, Iterator
from typing import IO, Any

import requests
import structlog
from flask import Response, jsonify, request
from werkzeug.datastructures import FileStorage
from werkzeug.formparser import FormDataParser

from chassis.errors import ApiError
from gateway.auth import current_caller
from gateway.metrics import SNAP_RECORDS, SNAPS
from gateway.proxy import (
    CHUNK,
    Upstream,
    call,
    headers_for_upstream,
    read_answer,
    too_large,
    upstream_error,
)
from gateway.settings import GatewaySettings

log = structlog.get_logger(__name__)

PRESET_FIELDS = ("template", "tone", "language")
SPOOL_IN_MEMORY = 64 * 1024
# Also bounds werkzeug's parse buffer, which takes 64 KiB reads: keep well above that.
FORM_FIELD_BYTES = 256 * 1024
FORM_PARTS = 32
ANSWER_LIMIT = 1024 * 1024


def spool(*_: Any, **__: Any) -> IO[bytes]:
    return tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY, mode="rb+")


class FileBody:
    """A spooled file sent on in chunks with its length (no rollover to disk just to size it)."""

    def __init__(self, file: IO[bytes], length: int) -> None:
        self.file = file
        self.length = length

    def __len__(self) -> int:
        return self.length

    def __iter__(self) -> Iterator[bytes]:
        self.file.seek(0)
        while chunk := self.file.read(CHUNK):
            yield chunk


def read_form(limit: int) -> tuple[FileStorage, dict[str, Any]]:
    if request.mimetype != "multipart/form-data":
        raise ApiError(415, "unsupported_media_type", "Send multipart/form-data.")
    if request.content_length is not None and request.content_length > limit:
        raise too_large(limit)
    request.max_content_length = limit
    parser = FormDataParser(
        stream_factory=spool,
        max_form_memory_size=FORM_FIELD_BYTES,
        max_content_length=limit,
        max_form_parts=FORM_PARTS,
    )
    _, form, files = parser.parse(
        request.stream, request.mimetype, request.content_length, request.mimetype_params
    )
    image = files.get("image")
    if image is None:
        raise ApiError(400, "missing_image", "Send the image in a multipart field 'image'.")
    fields: dict[str, Any] = {name: form[name] for name in PRESET_FIELDS if form.get(name)}
    raw_count = form.get("count")
    if raw_count:
        try:
            fields["count"] = int(raw_count)
        except ValueError:
            raise ApiError(422, "invalid_request", "count must be a whole number.") from None
    return image, fields


def json_or_error(upstream: Upstream, response: requests.Response) -> dict[str, Any]:
    """The service's JSON answer, or its error raised as the same error (5xx counted)."""
    if response.status_code >= 500:
        raise upstream_error(upstream, response)
    try:
        payload = json.loads(read_answer(upstream, response, ANSWER_LIMIT))
    except ValueError:
        payload = None
    if response.status_code >= 400:
        error = payload.get("error") if isinstance(payload, dict) else None
        if not isinstance(error, dict) or "code" not in error:
            raise ApiError(502, "bad_gateway", "A backing service gave an unexpected answer.")
        raise ApiError(
            response.status_code,
            str(error["code"]),
            str(error.get("message", "")),
            details=error.get("details") if isinstance(error.get("details"), dict) else None,
        )
    if not isinstance(payload, dict):
        raise ApiError(502, "bad_gateway", "A backing service gave an unexpected answer.")
    return payload


RECORD_ATTEMPTS = 2
UPLOAD_FIELDS = ("id", "size", "content_type", "width", "height", "sha256")


def admit(library: Upstream, size: int) -> None:
    """May the signed-in caller keep one more snap of ``size`` bytes? Raises the refusal."""
    response = call(library, "POST", "/internal/admission", json={"bytes": size}, stream=True)
    if response.status_code == 204:
        response.close()
        return
    json_or_error(library, response)
    raise ApiError(502, "bad_gateway", "A backing service gave an unexpected answer.")


def record_snap(library: Upstream, upload: dict[str, Any], ideas: dict[str, Any]) -> str | None:
    """Record a signed-in snap in the history; its id, or None when it could not be kept."""
    body = {
        "upload": {name: upload.get(name) for name in UPLOAD_FIELDS},
        "preset": ideas.get("preset"),
        "ideas": ideas.get("ideas"),
        "provider": ideas.get("provider"),
        "model": ideas.get("model"),
        "usage": ideas.get("usage"),
    }
    failure = ""
    for _ in range(RECORD_ATTEMPTS):
        try:
            recorded = json_or_error(
                library, call(library, "POST", "/internal/snaps", json=body, stream=True)
            )
        except ApiError as error:
            if error.status == 410:
                raise  # the account is being deleted: this snap must not be kept
            failure = error.code
            if error.status < 500:
                break
            continue
        if isinstance(recorded.get("id"), str):
            SNAP_RECORDS.labels("recorded").inc()
            return recorded["id"]
        failure = "bad_gateway"
    SNAP_RECORDS.labels("failed").inc()
    log.warning("snap_not_recorded", upload_id=upload.get("id"), code=failure)
    return None


IdeasStep = Callable[[dict[str, Any], dict[str, Any], str], Response]
"""The ideas step told as an event stream: (stored upload, preset fields, client address)."""


def create_snap(
    uploads: Upstream,
    ai: Upstream,
    library: Upstream,
    settings: GatewaySettings,
    as_events: IdeasStep | None = None,
) -> Response:
    image, fields = read_form(settings.max_body_bytes)
    SNAPS.labels("received").inc()
    stream = image.stream
    length = stream.seek(0, 2)
    if length > settings.max_upload_bytes:
        raise too_large(settings.max_upload_bytes)
    signed_in = current_caller().user is not None
    if signed_in:
        admit(library, length)
    forwarded = headers_for_upstream()
    upload = json_or_error(
        uploads,
        call(
            uploads,
            "POST",
            "/v1/uploads",
            data=FileBody(stream, length),
            headers={
                "Content-Type": "application/octet-stream",
                "X-Forwarded-For": forwarded["X-Forwarded-For"],
            },
            timeout=(uploads.client.timeout[0], settings.upload_read_timeout_seconds),
            stream=True,
        ),
    )
    image.close()
    if not isinstance(upload.get("id"), str):
        raise ApiError(502, "bad_gateway", "A backing service gave an unexpected answer.")
    SNAPS.labels("stored").inc()
    if as_events is not None:
        return as_events(upload, fields, forwarded["X-Forwarded-For"])
    try:
        ideas = json_or_error(
            ai,
            call(
                ai,
                "POST",
                "/v1/ideas",
                json={"upload_id": upload["id"], **fields},
                headers={"X-Forwarded-For": forwarded["X-Forwarded-For"]},
                timeout=(ai.client.timeout[0], settings.ai_read_timeout_seconds),
                stream=True,
            ),
        )
    except BaseException:
        discard_upload(uploads, upload["id"])
        raise
    SNAPS.labels("succeeded").inc()
    answer: dict[str, Any] = {"upload": upload, **ideas}
    if signed_in:
        try:
            answer["snap_id"] = record_snap(library, upload, ideas)
        except ApiError:
            discard_upload(uploads, upload["id"])
            raise
    response = jsonify(answer)
    response.status_code = 201
    return response


def discard_upload(uploads: Upstream, upload_id: str) -> None:
    try:
        response = call(uploads, "DELETE", f"/v1/uploads/{upload_id}")
        response.close()
        if response.status_code >= 400:
            log.warning(
                "snap_upload_not_discarded", upload_id=upload_id, status=response.status_code
            )
    except ApiError:
        log.warning("snap_upload_not_discarded", upload_id=upload_id)
