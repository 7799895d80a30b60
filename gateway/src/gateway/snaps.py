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
import re
import tempfile
from collections.abc import Callable, Iterator
from typing import IO, Any

import requests
import structlog
from flask import Response, jsonify, request
from python_multipart.exceptions import FormParserError, MultipartParseError
from python_multipart.multipart import MultipartParser
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.http import parse_options_header

from chassis.errors import ApiError
from gateway.auth import current_caller
from gateway.metrics import SNAP_RECORDS, SNAPS
from gateway.proxy import (
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
FORM_FIELDS = frozenset({*PRESET_FIELDS, "count"})
SPOOL_IN_MEMORY = 64 * 1024
# The spooled photo goes on to upload-svc in reads this large: a quarter as many reads,
# sends and Python iterations as 64 KiB ones, and still one buffer well under the
# gateway's memory bound per snap (tests/gateway/test_proxy.py).
SEND_CHUNK = 256 * 1024
# The incoming body is read in pieces this large. gunicorn's body reader gathers each
# read from 1 KiB pieces in a BytesIO and copies it out twice, so a read costs about three
# times its size at its peak; 64 KiB reads were both the cheapest in CPU and a quarter of
# the peak memory of 256 KiB ones (bench/profiles/gateway.md, "Body reads").
READ_CHUNK = 64 * 1024
# One text field, or one part's headers, may be this large; a form this many parts.
FORM_FIELD_BYTES = 256 * 1024
FORM_PARTS = 32
ANSWER_LIMIT = 1024 * 1024


def spool() -> IO[bytes]:
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
        while chunk := self.file.read(SEND_CHUNK):
            yield chunk


class MalformedForm(Exception):
    """The body is not a complete multipart form (bad syntax, or it ended early)."""


class SnapForm:
    """The snap's form, taken apart as the body streams in; only what the snap uses is kept.

    Why python-multipart's push parser and not werkzeug's form parser: werkzeug's decoder
    copies and searches its buffer in Python for every 64 KiB of the photo, which was half
    of the gateway's CPU per 12 MP snap. This parser finds the boundary with ``bytes.find``
    and hands the photo's bytes on as slices, so the photo costs about one copy into the
    spool. The first file part named ``image`` goes into the spool; other file parts are
    skipped, text fields other than the preset ones are counted and dropped. The limits
    are werkzeug's as the route had them: a text field or one part's headers over
    ``FORM_FIELD_BYTES``, or more than ``FORM_PARTS`` parts, is 413. One difference:
    line breaks must be CRLF, as RFC 2046 and every HTTP client have them; werkzeug
    also read a form written with bare LF.
    """

    def __init__(self, boundary: bytes) -> None:
        self.image: IO[bytes] | None = None
        self.fields: dict[str, str] = {}
        self.complete = False
        self._parts = 0
        self._header_name = bytearray()
        self._header_value = bytearray()
        self._headers: dict[str, str] = {}
        self._header_bytes = 0
        self._write: Callable[[memoryview], object] | None = None
        self._text: bytearray | None = None
        self._text_name = ""
        # The first boundary is a line of its own: "--boundary", then spaces, then a line
        # break (or "--", the form's end). Anything before it is preamble.
        self._first_delimiter = re.compile(
            rb"(?:^|\r\n)(--" + re.escape(boundary) + rb"[ \t]*(?:\r\n|--))"
        )
        self._preamble: bytearray | None = bytearray()
        self.parser = MultipartParser(
            boundary,
            {
                "on_part_begin": self._part_begin,
                "on_header_field": self._header_field,
                "on_header_value": self._header_value_data,
                "on_header_end": self._header_end,
                "on_headers_finished": self._headers_finished,
                "on_part_data": self._part_data,
                "on_part_end": self._part_end,
                "on_end": self._end,
            },
            max_header_count=FORM_FIELD_BYTES,
            max_header_size=4 * FORM_FIELD_BYTES,
        )

    def feed(self, data: bytes) -> None:
        if self._preamble is not None:
            # Text before the first boundary (RFC 2046's preamble) is skipped, as werkzeug
            # did; this parser itself only skips line breaks there.
            self._preamble += data
            found = self._first_delimiter.search(self._preamble)
            end = found.start(1) if found else len(self._preamble)
            if end > FORM_FIELD_BYTES:
                raise RequestEntityTooLarge()
            if found is None:
                return
            data = bytes(self._preamble[end:])
            self._preamble = None
        try:
            self.parser.write(data)
        except MultipartParseError as error:
            raise MalformedForm(str(error)) from error

    def close(self) -> None:
        if self.image is not None:
            self.image.close()

    def _counted_header(self, size: int) -> None:
        self._header_bytes += size
        if self._header_bytes > FORM_FIELD_BYTES:
            raise RequestEntityTooLarge()

    def _part_begin(self) -> None:
        self._parts += 1
        if self._parts > FORM_PARTS:
            raise RequestEntityTooLarge()
        self._headers = {}
        self._header_bytes = 0
        self._write = None
        self._text = None

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._counted_header(end - start)
        self._header_name += data[start:end]

    def _header_value_data(self, data: bytes, start: int, end: int) -> None:
        self._counted_header(end - start)
        self._header_value += data[start:end]

    def _header_end(self) -> None:
        name = self._header_name.decode("latin-1").strip().lower()
        self._headers.setdefault(name, self._header_value.decode("latin-1").strip())
        self._header_name.clear()
        self._header_value.clear()

    def _headers_finished(self) -> None:
        disposition = self._headers.get("content-disposition")
        if disposition is None:
            raise MalformedForm("a part has no Content-Disposition")
        _, options = parse_options_header(disposition)
        name = options.get("name", "")
        if options.get("filename") is not None:
            if name == "image" and self.image is None:
                self.image = spool()
                self._write = self.image.write
            return  # any other file: its bytes are passed over
        self._text = bytearray()
        self._text_name = name
        self._write = self._text.extend

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._text is not None and len(self._text) + (end - start) > FORM_FIELD_BYTES:
            raise RequestEntityTooLarge()
        if self._write is not None:
            self._write(memoryview(data)[start:end])  # a view: the photo is copied once

    def _part_end(self) -> None:
        if self._text is not None:
            if self._text_name in FORM_FIELDS and self._text_name not in self.fields:
                charset = part_charset(self._headers.get("content-type"))
                self.fields[self._text_name] = self._text.decode(charset, "replace")
            self._text = None
        self._write = None

    def _end(self) -> None:
        self.complete = True


def no_image() -> ApiError:
    return ApiError(400, "missing_image", "Send the image in a multipart field 'image'.")


def part_charset(content_type: str | None) -> str:
    """A text field's charset from its part's Content-Type, as werkzeug's parser read it."""
    if content_type:
        charset = parse_options_header(content_type)[1].get("charset", "").lower()
        if charset in {"ascii", "us-ascii", "utf-8", "iso-8859-1"}:
            return charset
    return "utf-8"


def parse_form() -> SnapForm:
    """The whole body read through the parser; a malformed or cut-off form has no image.

    Nothing goes upstream before this returns, so a body that breaks off midway leaves
    nothing half-written anywhere: its spool is closed and the answer is the same 400
    ``missing_image`` a form without the image gets (as with werkzeug's parser, which
    read any unreadable form as an empty one).
    """
    boundary = request.mimetype_params.get("boundary", "").encode("latin-1", "replace")
    if not boundary:
        raise no_image()
    try:
        form = SnapForm(boundary)
    except (FormParserError, ValueError):
        raise no_image() from None
    stream = request.stream
    try:
        while chunk := stream.read(READ_CHUNK):
            form.feed(chunk)
        if not form.complete:
            raise MalformedForm("the body ended before the form did")
    except MalformedForm:
        form.close()
        raise no_image() from None
    except BaseException:
        form.close()
        raise
    return form


def read_form(limit: int) -> tuple[IO[bytes], dict[str, Any]]:
    if request.mimetype != "multipart/form-data":
        raise ApiError(415, "unsupported_media_type", "Send multipart/form-data.")
    if request.content_length is not None and request.content_length > limit:
        raise too_large(limit)
    # werkzeug counts the stream itself against the limit, chunked bodies included (413).
    request.max_content_length = limit
    form = parse_form()
    image = form.image
    if image is None:
        raise no_image()
    fields: dict[str, Any] = {
        name: form.fields[name] for name in PRESET_FIELDS if form.fields.get(name)
    }
    raw_count = form.fields.get("count")
    if raw_count:
        try:
            fields["count"] = int(raw_count)
        except ValueError:
            image.close()
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
    photo, fields = read_form(settings.max_body_bytes)
    with photo:  # the spool goes as soon as upload-svc has the photo, or on any failure
        SNAPS.labels("received").inc()
        length = photo.seek(0, 2)
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
                data=FileBody(photo, length),
                headers={
                    "Content-Type": "application/octet-stream",
                    "X-Forwarded-For": forwarded["X-Forwarded-For"],
                },
                timeout=(uploads.client.timeout[0], settings.upload_read_timeout_seconds),
                stream=True,
            ),
        )
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
