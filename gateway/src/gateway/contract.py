"""The public API as code: request and response models, and the table of operations.

The gateway registers its routes from :data:`OPERATIONS` and builds ``/openapi.json``
from the same table and these pydantic models (see :mod:`gateway.openapi`), so the
contract cannot drift from what is served. Response models allow extra fields: the
services behind may add fields without breaking clients; the required ones are what
clients can rely on.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema
from pydantic.json_schema import SkipJsonSchema

UPLOAD_ID_PATTERN = r"^[A-Za-z0-9_-]{1,128}$"
IDEAS_UPLOAD_ID_PATTERN = r"^[0-9a-f]{32}$"
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
    """``multipart/form-data``: the photo and, optionally, the preset."""

    model_config = ConfigDict(extra="forbid")
    image: Binary = Field(description="JPEG, PNG, WebP or HEIC, at most the upload limit.")
    template: FormText = Field(default=None, description="A template id from /v1/presets.")
    tone: FormText = Field(default=None, description="A tone id from /v1/presets.")
    language: FormText = Field(default=None, description="A language code from /v1/presets.")
    count: FormInteger = Field(default=None, description="How many ideas (see presets' count).")


class UploadForm(BaseModel):
    """``multipart/form-data`` with the photo in ``image``."""

    model_config = ConfigDict(extra="forbid")
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

    @property
    def path(self) -> str:
        return self.rule.replace("<", "{").replace(">", "}")


def errors(*statuses: int) -> dict[int, Reply]:
    described = {
        400: "The request is malformed.",
        401: (
            "The sign-in token is not valid (`invalid_token`: sign in again), sign-in is "
            "required (`sign_in_required`), or the API key is missing or not valid."
        ),
        404: "No such upload.",
        409: "A request with this Idempotency-Key is still running.",
        413: "The body is larger than the limit.",
        415: "The image is not JPEG, PNG, WebP or HEIC, or the body has the wrong type.",
        422: "Valid syntax, but the content was refused (see the code).",
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
                else ()
            ),
        )
        for status in statuses
    }


UPSTREAM = (502, 503, 504)
UPLOAD_OPERATIONS = ("get_upload", "get_thumbnail", "delete_upload")
LIMITED = (401, 429)

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
            **errors(400, 409, 413, 415, 422, *LIMITED, *UPSTREAM),
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
