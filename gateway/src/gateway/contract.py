"""The public API as code: request and response models, and the table of operations.

The gateway registers its routes from :data:`OPERATIONS` and builds ``/openapi.json``
from the same table and these pydantic models (see :mod:`gateway.openapi`), so the
contract cannot drift from what is served. Response models allow extra fields: the
services behind may add fields without breaking clients; the required ones are what
clients can rely on.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema
from pydantic.json_schema import SkipJsonSchema

UPLOAD_ID_PATTERN = r"^[A-Za-z0-9_-]{1,128}$"
IDEAS_UPLOAD_ID_PATTERN = r"^[0-9a-f]{32}$"
LIBRARY_ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
"""Snap ids as the gateway lets them through."""
DRAFT_ID_PATTERN = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
"""A draft id: a UUID the app made, in its canonical form."""
MAX_REVISION = 2**31 - 1
"""The largest revision number a path may name (a database integer)."""
IMAGE_TYPES = ("image/jpeg", "image/png", "image/webp")
ACCEPTED_IMAGE_TYPES = (*IMAGE_TYPES, "image/heic")

Binary = Annotated[bytes, WithJsonSchema({"type": "string", "format": "binary"})]
# Form fields are text or absent: a multipart form has no null.
FormText = str | SkipJsonSchema[None]
FormInteger = int | SkipJsonSchema[None]


class Open(BaseModel):
    """A response object: the listed fields are guaranteed, more may come."""

    model_config = ConfigDict(extra="allow")


class ErrorInfo(Open):
    code: str = Field(description="Stable snake_case code to branch on.", examples=["rate_limited"])
    message: str = Field(description="For humans; may change.")
    request_id: str | None = Field(description="Quote it when reporting a problem.")
    details: dict[str, Any] | None = Field(default=None, description="Code-specific details.")


class ErrorResponse(BaseModel):
    """Every error, from the gateway or a service behind it, has this shape."""

    error: ErrorInfo


class UploadUrls(Open):
    image: str = Field(description="Path of the stored image.")
    thumbnail: str = Field(description="Path of its thumbnail (JPEG).")


class Upload(Open):
    """A stored image. Metadata was stripped and the image re-encoded."""

    id: str = Field(pattern=UPLOAD_ID_PATTERN)
    content_type: str = Field(examples=["image/jpeg"])
    size: int = Field(ge=0, description="Bytes stored.")
    width: int = Field(ge=1)
    height: int = Field(ge=1)
    sha256: str = Field(description="Hex SHA-256 of the stored bytes (also its ETag).")
    created_at: datetime
    urls: UploadUrls
    captured_at: str | None = Field(default=None, description="When the photo was taken.")


class Preset(Open):
    template: str
    tone: str
    language: str
    count: int = Field(ge=1)


class Idea(Open):
    title: str
    body: str
    hashtags: list[str]


class Usage(Open):
    input_tokens: int = Field(ge=0)
    output_tokens: int = Field(ge=0)
    thinking_tokens: int = Field(ge=0)
    total_tokens: int = Field(ge=0)


class IdeasResponse(Open):
    upload_id: str
    preset: Preset
    ideas: list[Idea]
    provider: str = Field(description='"gemini", or "local" for the offline provider.')
    model: str
    usage: Usage
    cached: bool
    disclaimer: str = Field(description="Show it with the ideas: they were written by AI.")


class SnapResponse(IdeasResponse):
    """The stored upload and the ideas about it."""

    upload: Upload
    snap_id: str | None = Field(
        default=None,
        description="Signed in: the snap's id in the history (null if it could not be "
        "recorded just now; the ideas are still yours). Absent for anonymous snaps.",
    )


class IdeaEvent(Open):
    """``event: idea``: one idea, whole, the moment the model has written it."""

    index: int = Field(ge=0, description="Its place in the answer, from 0; each sent once.")
    idea: Idea


class IdeasDone(Open):
    """``event: done``: the JSON answer without its ideas (they came as idea events)."""

    upload_id: str
    preset: Preset
    provider: str
    model: str
    usage: Usage
    cached: bool
    disclaimer: str


class SnapDone(IdeasDone):
    upload: Upload


class StreamError(Open):
    """``event: error``: the stream failed; the envelope and code the JSON answer would carry."""

    status: int = Field(description="The HTTP status the JSON answer would have had.")
    error: ErrorInfo
    retry_after: int | None = Field(default=None, description="Seconds, as Retry-After.")


STREAM_NOTE = (
    " With `Accept: text/event-stream` the answer is Server-Sent Events: {events}, each "
    "`data:` one JSON object (schemas under `x-events`), with comment lines "
    "(`: keep-alive`) while the model thinks. Errors found before the stream starts "
    "(limits, quota, a refused photo, an unknown upload) are the usual JSON errors."
)


class IdeasRequest(BaseModel):
    """Ideas for an upload stored earlier; preset fields left out take the defaults."""

    model_config = ConfigDict(extra="forbid")
    upload_id: str = Field(pattern=IDEAS_UPLOAD_ID_PATTERN)
    template: str | None = Field(default=None, description="A template id from /v1/presets.")
    tone: str | None = Field(default=None, description="A tone id from /v1/presets.")
    language: str | None = Field(default=None, description="A language code from /v1/presets.")
    count: int | None = Field(default=None, description="How many ideas (see presets' count).")


class SnapForm(BaseModel):
    """``multipart/form-data``: the photo and, optionally, the preset (other parts are ignored)."""

    model_config = ConfigDict(extra="allow")
    image: Binary = Field(description="JPEG, PNG, WebP or HEIC, at most the upload limit.")
    template: FormText = Field(default=None, description="A template id from /v1/presets.")
    tone: FormText = Field(default=None, description="A tone id from /v1/presets.")
    language: FormText = Field(default=None, description="A language code from /v1/presets.")
    count: FormInteger = Field(default=None, description="How many ideas (see presets' count).")


class UploadForm(BaseModel):
    """``multipart/form-data`` with the photo in ``image`` (other parts are ignored)."""

    model_config = ConfigDict(extra="allow")
    image: Binary = Field(description="JPEG, PNG, WebP or HEIC, at most the upload limit.")


class TemplateChoice(Open):
    id: str
    name: str
    description: str


class ToneChoice(Open):
    id: str
    name: str


class LanguageChoice(Open):
    code: str
    name: str


class CountRange(Open):
    min: int
    max: int


class PresetDefaults(Open):
    template: str
    tone: str
    language: str
    count: int


class Presets(Open):
    """What the app can offer: templates, tones, languages and the count range."""

    templates: list[TemplateChoice]
    tones: list[ToneChoice]
    languages: list[LanguageChoice]
    count: CountRange
    defaults: PresetDefaults


class HistorySnap(Open):
    """A snap kept in a signed-in person's history."""

    id: str
    created_at: datetime
    upload: dict[str, Any] = Field(description="The stored upload (id, size, urls...).")
    preset: dict[str, Any]
    ideas: list[Idea]
    provider: str
    model: str | None = None
    usage: dict[str, Any] | None = None


class SnapPage(Open):
    snaps: list[HistorySnap] = Field(description="Newest first.")
    next_page_token: str | None = Field(description="Send as page_token for the next page.")


class Draft(Open):
    id: str
    title: str
    body: str
    snap_id: str | None = None
    version: int
    etag: str = Field(description="As the ETag header; send it in If-Match to change the draft.")
    created_at: datetime
    updated_at: datetime


class DraftContent(BaseModel):
    """A whole draft (``PUT``): the same PUT twice is one draft."""

    model_config = ConfigDict(extra="forbid")
    title: str = Field(default="", max_length=500)
    body: str = ""
    snap_id: str | None = Field(default=None, max_length=32)


class DraftPatch(BaseModel):
    """Fields to change; ``autosave: true`` folds close saves into one revision."""

    model_config = ConfigDict(extra="forbid")
    title: str | None = Field(default=None, max_length=500)
    body: str | None = None
    snap_id: str | None = Field(default=None, max_length=32)
    autosave: bool = False


class Revision(Open):
    rev: int
    kind: str = Field(examples=["save", "autosave", "restore"])
    restored_from: int | None = None
    title: str
    body: str
    snap_id: str | None = None
    saves: int
    created_at: datetime
    updated_at: datetime


class RevisionPage(Open):
    revisions: list[Revision] = Field(description="Newest first.")
    next_page_token: str | None
    total: int


class Change(Open):
    seq: int
    kind: str = Field(examples=["snap", "draft"])
    op: str = Field(examples=["upsert", "delete"])
    id: str
    data: dict[str, Any] | None = Field(description="The snap or draft; null for a delete.")


class Changes(Open):
    changes: list[Change] = Field(description="In commit order.")
    next_cursor: str
    has_more: bool


class Me(Open):
    """The signed-in person as library-svc knows them."""

    uid: str
    tier: str
    limits: dict[str, Any]
    usage: dict[str, Any]
    entitlements: list[dict[str, Any]]
    features: dict[str, Any]
    history: dict[str, Any]
    storage: dict[str, Any]


class DeletionPending(Open):
    deletion: dict[str, Any] = Field(description="The pending deletion; it is finished later.")


class BillingEventData(Open):
    """RevenueCat's event; ``app_user_id`` is the Firebase uid (others are ignored)."""

    id: str = Field(min_length=1, description="Deduplicates deliveries.")
    type: str = Field(min_length=1, examples=["INITIAL_PURCHASE", "EXPIRATION"])


class BillingEvent(Open):
    """A purchase provider's webhook (RevenueCat's format: ``{"api_version", "event"}``)."""

    event: BillingEventData


class BillingAnswer(Open):
    status: str = Field(examples=["applied", "duplicate", "ignored"])
    tier: str | None = None


class Health(Open):
    status: str = Field(examples=["ok"])


class Readiness(Open):
    status: str = Field(examples=["ready"])
    checks: dict[str, str]


@dataclass(frozen=True)
class Body:
    """A request body: the model that describes it, under one or more media types."""

    model: type[BaseModel] | None
    media_types: tuple[str, ...]
    description: str = ""


@dataclass(frozen=True)
class Reply:
    """A documented answer: a JSON model, or raw media (images) when ``model`` is None."""

    description: str
    model: type[BaseModel] | None = None
    media_types: tuple[str, ...] = ("application/json",)
    headers: tuple[str, ...] = ()
    links: tuple[tuple[str, str], ...] = ()
    """(operation endpoint, runtime expression of the upload id) the answer leads to."""
    events: tuple[tuple[str, type[BaseModel]], ...] = ()
    """(event name, its data's model): the answer as ``text/event-stream`` too."""


PATH_PARAMETER = re.compile(r"<(?:[a-z]+:)?([A-Za-z_]+)>")
RULE_PARAMETER = re.compile(r"<(?:([a-z]+):)?([A-Za-z_]+)>")

SignIn = Literal["optional", "required"]
"""``optional``: anonymous or signed in; ``required``: 401 ``sign_in_required`` without a token."""


@dataclass(frozen=True)
class Operation:
    endpoint: str
    method: str
    rule: str
    """The Flask rule; the OpenAPI path is derived from it."""
    summary: str
    description: str
    tag: str
    replies: dict[int, Reply]
    body: Body | None = None
    costs_ai: bool = False
    limited: bool = True
    idempotent: bool = False
    conditional: bool = False
    sign_in: SignIn = "optional"
    """Whether the operation needs a signed-in caller (a verified Firebase ID token).

    Only public API operations (``limited``) look at tokens; health checks never do.
    """
    query: tuple[tuple[str, str], ...] = ()
    """(name, description) of the query parameters it reads."""
    if_match: bool = False
    """A change guarded by ``If-Match`` (the resource's ``ETag``)."""

    @property
    def path(self) -> str:
        return PATH_PARAMETER.sub(r"{\1}", self.rule)

    @property
    def path_parameters(self) -> list[tuple[str, str]]:
        """(name, Flask converter) of each path parameter, in order."""
        return [
            (name, converter or "string") for converter, name in RULE_PARAMETER.findall(self.rule)
        ]


def errors(*statuses: int) -> dict[int, Reply]:
    described = {
        400: "The request is malformed.",
        401: (
            "The sign-in token is not valid (`invalid_token`: sign in again), sign-in is "
            "required (`sign_in_required`), or the API key is missing or not valid."
        ),
        403: (
            "A signed-in person's history is full (`history_limit_reached`) or their "
            "storage quota would be passed (`storage_quota_exceeded`); `details` has the "
            "limit, what is used and the tier."
        ),
        404: "No such upload, snap, draft or revision.",
        409: "A request with this Idempotency-Key is still running.",
        410: (
            "Gone: the account is deleted or being deleted (`account_deleted`), the draft "
            "was deleted (`draft_deleted`), or the cursor is too old (`full_resync_required`)."
        ),
        412: (
            "If-Match names a stale etag (`precondition_failed`): the current draft is in "
            "`error.details.current`."
        ),
        428: "A change needs the draft's etag in If-Match (`precondition_required`).",
        413: "The body is larger than the limit.",
        414: "The request line is too long (`uri_too_long`): shorten the query string.",
        415: "The image is not JPEG, PNG, WebP or HEIC, or the body has the wrong type.",
        422: "Valid syntax, but the content was refused (see the code).",
        431: "The request headers are too large or too many (`header_fields_too_large`).",
        429: "A rate limit or the daily AI quota was hit; retry after Retry-After.",
        502: "A backing service failed or answered something unexpected.",
        503: (
            "A backing service is unavailable (`upstream_unavailable`), or sign-in cannot "
            "be checked right now (`auth_unavailable`); retry later."
        ),
        504: "A backing service did not answer in time.",
    }
    return {
        status: Reply(
            described[status],
            ErrorResponse,
            headers=(
                ("Retry-After",)
                if status in (429, 503)
                else ("WWW-Authenticate",)
                if status == 401
                else ("ETag",)
                if status == 412
                else ()
            ),
        )
        for status in statuses
    }


UPSTREAM = (502, 503, 504)
# What the HTTP server refuses before any route runs, so every operation can answer it.
REFUSED_BEFORE_ROUTING = (414, 431)
UPLOAD_OPERATIONS = ("get_upload", "get_thumbnail", "delete_upload")
LIMITED = (401, 429)
PAGING = (
    ("page_size", "Items per page, 1 to 100 (default 20)."),
    ("page_token", "The `next_page_token` of the previous page."),
)
LIBRARY_ERRORS = errors(400, 410, *LIMITED, *UPSTREAM)

OPERATIONS: tuple[Operation, ...] = (
    Operation(
        endpoint="create_snap",
        method="POST",
        rule="/v1/snaps",
        summary="Store a photo and get ideas about it",
        description=(
            "The one call the app needs: the image is checked and stored, then ideas are "
            "written for it with the chosen preset. If the ideas step fails the upload is "
            "removed again. Costs one AI call (rate limit `ai` and the daily quota)."
            + STREAM_NOTE.format(events="`upload`, one `idea` per idea, then `done` or `error`")
        ),
        tag="snaps",
        body=Body(SnapForm, ("multipart/form-data",)),
        replies={
            201: Reply(
                "The stored upload and the ideas.",
                SnapResponse,
                links=tuple(
                    (endpoint, "$response.body#/upload/id") for endpoint in UPLOAD_OPERATIONS
                ),
            ),
            200: Reply(
                "With Accept: text/event-stream: the stored upload, then each idea as it is "
                "written, then done (or error).",
                None,
                (),
                events=(
                    ("upload", Upload),
                    ("idea", IdeaEvent),
                    ("done", SnapDone),
                    ("error", StreamError),
                ),
            ),
            **errors(400, 403, 409, 410, 413, 415, 422, *LIMITED, *UPSTREAM),
        },
        costs_ai=True,
        idempotent=True,
    ),
    Operation(
        endpoint="create_upload",
        method="POST",
        rule="/v1/uploads",
        summary="Store a photo",
        description=(
            "Multipart with the photo in `image`, or the raw image as the body. The format "
            "is decided by the content, metadata is stripped."
        ),
        tag="uploads",
        body=Body(
            UploadForm,
            ("multipart/form-data", *ACCEPTED_IMAGE_TYPES, "application/octet-stream"),
        ),
        replies={
            201: Reply(
                "Stored.",
                Upload,
                headers=("Location",),
                links=(
                    *((endpoint, "$response.body#/id") for endpoint in UPLOAD_OPERATIONS),
                    ("create_ideas", "$response.body#/id"),
                ),
            ),
            **errors(400, 409, 413, 415, 422, *LIMITED, *UPSTREAM),
        },
        idempotent=True,
    ),
    Operation(
        endpoint="get_upload",
        method="GET",
        rule="/v1/uploads/<upload_id>",
        summary="Fetch a stored image",
        description="The stored bytes, cacheable for a day (`ETag` is the sha256).",
        tag="uploads",
        replies={
            200: Reply("The image.", None, IMAGE_TYPES, headers=("ETag",)),
            304: Reply("Not modified (If-None-Match matched).", None, ()),
            **errors(404, *LIMITED, *UPSTREAM),
        },
        conditional=True,
    ),
    Operation(
        endpoint="delete_upload",
        method="DELETE",
        rule="/v1/uploads/<upload_id>",
        summary="Delete a stored image",
        description="Deletes the image and everything derived from it.",
        tag="uploads",
        replies={
            204: Reply("Deleted.", None, ()),
            **errors(404, *LIMITED, *UPSTREAM),
        },
    ),
    Operation(
        endpoint="get_thumbnail",
        method="GET",
        rule="/v1/uploads/<upload_id>/thumbnail",
        summary="Fetch an image's thumbnail",
        description="A JPEG thumbnail of the stored image.",
        tag="uploads",
        replies={
            200: Reply("The thumbnail.", None, ("image/jpeg",), headers=("ETag",)),
            304: Reply("Not modified (If-None-Match matched).", None, ()),
            **errors(404, *LIMITED, *UPSTREAM),
        },
        conditional=True,
    ),
    Operation(
        endpoint="create_ideas",
        method="POST",
        rule="/v1/ideas",
        summary="Ideas for a stored upload",
        description="Costs one AI call (rate limit `ai` and the daily quota)."
        + STREAM_NOTE.format(events="one `idea` per idea, then `done` or `error`"),
        tag="ideas",
        body=Body(IdeasRequest, ("application/json",)),
        replies={
            200: Reply(
                "The ideas (or, with Accept: text/event-stream, each idea as it is written).",
                IdeasResponse,
                events=(("idea", IdeaEvent), ("done", IdeasDone), ("error", StreamError)),
            ),
            **errors(400, 404, 409, 413, 415, 422, *LIMITED, *UPSTREAM),
        },
        costs_ai=True,
        idempotent=True,
    ),
    Operation(
        endpoint="get_presets",
        method="GET",
        rule="/v1/presets",
        summary="Templates, tones and languages on offer",
        description="Cacheable for five minutes.",
        tag="ideas",
        replies={
            200: Reply("The catalogue.", Presets),
            **errors(*LIMITED, *UPSTREAM),
        },
    ),
    Operation(
        endpoint="list_snaps",
        method="GET",
        rule="/v1/snaps",
        summary="The signed-in person's history",
        description="Every snap they made signed in, newest first, paged with `page_token`.",
        tag="library",
        query=PAGING,
        replies={200: Reply("A page of the history.", SnapPage), **LIBRARY_ERRORS},
        sign_in="required",
    ),
    Operation(
        endpoint="get_snap",
        method="GET",
        rule="/v1/snaps/<snap_id>",
        summary="One snap of the history",
        description="The snap as recorded: the upload, the preset and the ideas.",
        tag="library",
        replies={200: Reply("The snap.", HistorySnap), **errors(404), **LIBRARY_ERRORS},
        sign_in="required",
    ),
    Operation(
        endpoint="delete_snap",
        method="DELETE",
        rule="/v1/snaps/<snap_id>",
        summary="Delete a snap and its photo",
        description="Removes the photo from storage, then the record (a tombstone stays for sync).",
        tag="library",
        replies={204: Reply("Deleted.", None, ()), **errors(404), **LIBRARY_ERRORS},
        sign_in="required",
    ),
    Operation(
        endpoint="put_draft",
        method="PUT",
        rule="/v1/drafts/<draft_id>",
        summary="Create (or replace) a draft",
        description=(
            "The id is a UUID made by the app; the same PUT twice is one draft (201, then "
            "200). Replacing an existing draft with other content needs If-Match."
        ),
        tag="drafts",
        body=Body(DraftContent, ("application/json",)),
        replies={
            201: Reply("Created.", Draft, headers=("ETag", "Location")),
            200: Reply("The draft (unchanged, or replaced).", Draft, headers=("ETag",)),
            **errors(404, 412, 413, 415, 422, 428),
            **LIBRARY_ERRORS,
        },
        sign_in="required",
        if_match=True,
    ),
    Operation(
        endpoint="get_draft",
        method="GET",
        rule="/v1/drafts/<draft_id>",
        summary="A draft",
        description="With its ETag (304 on a matching If-None-Match).",
        tag="drafts",
        replies={
            200: Reply("The draft.", Draft, headers=("ETag",)),
            304: Reply("Not modified (If-None-Match matched).", None, ()),
            **errors(404),
            **LIBRARY_ERRORS,
        },
        sign_in="required",
        conditional=True,
    ),
    Operation(
        endpoint="patch_draft",
        method="PATCH",
        rule="/v1/drafts/<draft_id>",
        summary="Change a draft",
        description="Every save is a revision; autosaves close together fold into one.",
        tag="drafts",
        body=Body(DraftPatch, ("application/json",)),
        replies={
            200: Reply("The changed draft.", Draft, headers=("ETag",)),
            **errors(404, 412, 413, 415, 422, 428),
            **LIBRARY_ERRORS,
        },
        sign_in="required",
        if_match=True,
    ),
    Operation(
        endpoint="delete_draft",
        method="DELETE",
        rule="/v1/drafts/<draft_id>",
        summary="Delete a draft and its revisions",
        description="A tombstone stays in the change feed.",
        tag="drafts",
        replies={
            204: Reply("Deleted.", None, ()),
            **errors(404, 412, 428),
            **LIBRARY_ERRORS,
        },
        sign_in="required",
        if_match=True,
    ),
    Operation(
        endpoint="list_revisions",
        method="GET",
        rule="/v1/drafts/<draft_id>/revisions",
        summary="A draft's revisions",
        description="Newest first, paged with `page_token`.",
        tag="drafts",
        query=PAGING,
        replies={200: Reply("A page of revisions.", RevisionPage), **errors(404), **LIBRARY_ERRORS},
        sign_in="required",
    ),
    Operation(
        endpoint="restore_revision",
        method="POST",
        rule="/v1/drafts/<draft_id>/revisions/<int:rev>:restore",
        summary="Make an old revision the draft again",
        description="The restore is itself a new revision (kind `restore`).",
        tag="drafts",
        replies={
            200: Reply("The restored draft.", Draft, headers=("ETag",)),
            **errors(404, 412, 428),
            **LIBRARY_ERRORS,
        },
        sign_in="required",
        if_match=True,
    ),
    Operation(
        endpoint="sync_changes",
        method="GET",
        rule="/v1/sync/changes",
        summary="What changed since a cursor (offline sync)",
        description=(
            "Snaps, drafts and deletions (tombstones) in commit order; no cursor means from "
            "the beginning. An expired cursor is 410 `full_resync_required`."
        ),
        tag="library",
        query=(
            ("cursor", "The `next_cursor` of the last page applied."),
            ("page_size", "Changes per page, 1 to 100 (default 100)."),
        ),
        replies={200: Reply("A page of changes.", Changes), **LIBRARY_ERRORS},
        sign_in="required",
    ),
    Operation(
        endpoint="get_me",
        method="GET",
        rule="/v1/me",
        summary="The signed-in person",
        description=(
            "Tier, its limits, today's usage, entitlements, features (`ads`), history and "
            "storage used."
        ),
        tag="account",
        replies={200: Reply("The account.", Me), **LIBRARY_ERRORS},
        sign_in="required",
    ),
    Operation(
        endpoint="delete_me",
        method="DELETE",
        rule="/v1/me",
        summary="Delete the account and everything in it",
        description=(
            "History, drafts, photos, limit counters and the Firebase user. 204 when done, "
            "202 when a step must be finished later (it is, by a retry or the sweep); from "
            "the start no request of the person succeeds."
        ),
        tag="account",
        replies={
            204: Reply("Deleted.", None, ()),
            202: Reply("Deletion begun; it is finished later.", DeletionPending),
            **LIBRARY_ERRORS,
        },
        sign_in="required",
    ),
    Operation(
        endpoint="export_me",
        method="GET",
        rule="/v1/me/export",
        summary="Everything the account keeps, as one zip",
        description="`library.json` and `photos/<upload id>.<ext>`, streamed as it is built.",
        tag="account",
        replies={200: Reply("The archive.", None, ("application/zip",)), **LIBRARY_ERRORS},
        sign_in="required",
    ),
    Operation(
        endpoint="billing_event",
        method="POST",
        rule="/v1/billing/events",
        summary="Purchase provider webhooks (RevenueCat)",
        description=(
            "Authorised by the shared secret in `Authorization` (not a sign-in token), "
            "checked by library-svc; not rate limited (the provider delivers in bursts from "
            "few addresses). Deduplicated by event id."
        ),
        tag="billing",
        body=Body(BillingEvent, ("application/json",)),
        replies={
            200: Reply("Applied, a duplicate, or ignored.", BillingAnswer),
            401: Reply("The webhook secret is wrong.", ErrorResponse),
            **errors(400, 413, 415, 422, *UPSTREAM),
        },
        limited=False,
    ),
    Operation(
        endpoint="healthz",
        method="GET",
        rule="/healthz",
        summary="Liveness",
        description="The process is up. Touches no dependency.",
        tag="health",
        replies={200: Reply("Alive.", Health)},
        limited=False,
    ),
    Operation(
        endpoint="readyz",
        method="GET",
        rule="/readyz",
        summary="Readiness",
        description="Whether the gateway's own dependencies are usable.",
        tag="health",
        replies={
            200: Reply("Ready.", Readiness),
            503: Reply("Not ready.", ErrorResponse),
        },
        limited=False,
    ),
)

BY_ENDPOINT = {operation.endpoint: operation for operation in OPERATIONS}
