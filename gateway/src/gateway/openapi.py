"""``/openapi.json``: the OpenAPI 3.1 document, generated from :mod:`gateway.contract`.

Schemas come from the pydantic models (``models_json_schema``); paths, parameters,
status codes and headers from the operations table the routes are registered from. The
document is built once per worker and depends on configuration only where the API does
(the API key header's name, whether a key is required).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from gateway.contract import (
    BY_ENDPOINT,
    DRAFT_ID_PATTERN,
    LIBRARY_ID_PATTERN,
    MAX_REVISION,
    OPERATIONS,
    REFUSED_BEFORE_ROUTING,
    UPLOAD_ID_PATTERN,
    Body,
    Operation,
    Reply,
    errors,
)
from gateway.idempotency import HEADER as IDEMPOTENCY_HEADER
from gateway.settings import GatewaySettings
from gateway.tiers import Tiers

REF = "#/components/schemas/{model}"
BINARY = {"type": "string", "format": "binary"}
RATE_LIMIT_HEADERS = {
    "X-RateLimit-Limit": "Requests allowed in the window of the limit closest to running out.",
    "X-RateLimit-Remaining": "Requests left in that window.",
    "X-RateLimit-Reset": "When that window resets (Unix time, seconds).",
    "RateLimit-Limit": "As X-RateLimit-Limit (IETF draft name).",
    "RateLimit-Remaining": "As X-RateLimit-Remaining (IETF draft name).",
    "RateLimit-Reset": "Seconds until that window resets.",
}


def header_components() -> dict[str, Any]:
    integer = {"type": "integer", "minimum": 0}
    headers: dict[str, Any] = {
        name: {"description": description, "schema": integer}
        for name, description in RATE_LIMIT_HEADERS.items()
    }
    headers["RateLimit-Policy"] = {
        "description": "Every limit on this route: `amount;w=window-seconds`, comma separated.",
        "schema": {"type": "string"},
    }
    headers["Retry-After"] = {
        "description": "Seconds to wait before retrying.",
        "schema": {"type": "integer", "minimum": 0},
    }
    headers["X-Request-ID"] = {
        "description": "The request's id: in every log line, trace and error about it.",
        "required": True,
        "schema": {"type": "string"},
    }
    headers["Location"] = {"description": "Path of the new upload.", "schema": {"type": "string"}}
    headers["ETag"] = {"description": "Validator for If-None-Match.", "schema": {"type": "string"}}
    headers["WWW-Authenticate"] = {
        "description": '`Bearer error="invalid_token"` for a bad token; `Bearer` when sign-in '
        "is required.",
        "schema": {"type": "string"},
    }
    headers["Idempotency-Replayed"] = {
        "description": "`true` when this is the stored answer to an earlier request.",
        "schema": {"type": "string", "enum": ["true"]},
    }
    return headers


def header_refs(operation: Operation, reply: Reply, status: int) -> dict[str, Any]:
    names = ["X-Request-ID", *reply.headers]
    if operation.limited:
        names.extend([*RATE_LIMIT_HEADERS, "RateLimit-Policy"])
    if operation.idempotent and status < 500:
        names.append("Idempotency-Replayed")
    refs: dict[str, Any] = {name: {"$ref": f"#/components/headers/{name}"} for name in names}
    if status == 429:
        refs["Retry-After"] = {
            "description": "Seconds until the limit that was hit resets.",
            "required": True,
            "schema": {"type": "integer", "minimum": 1},
        }
    return refs


def schema_ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": REF.format(model=model.__name__)}


def request_body(body: Body) -> dict[str, Any]:
    content: dict[str, Any] = {}
    for media_type in body.media_types:
        if media_type in ("multipart/form-data", "application/json") and body.model is not None:
            content[media_type] = {"schema": schema_ref(body.model)}
        else:
            content[media_type] = {"schema": BINARY}
    return {"required": True, "content": content}


def responses(operation: Operation) -> dict[str, Any]:
    documented: dict[str, Any] = {}
    replies = {**errors(*REFUSED_BEFORE_ROUTING), **operation.replies}
    for status, reply in sorted(replies.items()):
        entry: dict[str, Any] = {
            "description": reply.description,
            "headers": header_refs(operation, reply, status),
        }
        if reply.links:
            entry["links"] = links(reply)
        if reply.model is not None:
            entry["content"] = {"application/json": {"schema": schema_ref(reply.model)}}
        elif reply.media_types:
            entry["content"] = {media_type: {"schema": BINARY} for media_type in reply.media_types}
        if reply.events:
            entry.setdefault("content", {})["text/event-stream"] = event_stream(reply)
        documented[str(status)] = entry
    return documented


def event_stream(reply: Reply) -> dict[str, Any]:
    """Server-Sent Events: the stream is text; each event's JSON data has its schema."""
    names = ", ".join(name for name, _ in reply.events)
    return {
        "schema": {
            "type": "string",
            "description": f"Server-Sent Events ({names}); each data line is one JSON object.",
        },
        "x-events": {name: schema_ref(model) for name, model in reply.events},
    }


def links(reply: Reply) -> dict[str, Any]:
    """What a client can do next with the id in this answer (also drives stateful tests)."""
    found: dict[str, Any] = {}
    for endpoint, expression in reply.links:
        target = BY_ENDPOINT[endpoint]
        link: dict[str, Any] = {"operationId": endpoint}
        if target.body is not None:
            link["requestBody"] = {"upload_id": expression}
        else:
            link["parameters"] = {"path.upload_id": expression}
        found["".join(part.title() for part in endpoint.split("_"))] = link
    return found


def parameters(operation: Operation) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for name, converter in operation.path_parameters:
        if name == "upload_id":
            schema: dict[str, Any] = {"type": "string", "pattern": UPLOAD_ID_PATTERN}
        elif converter == "int":
            schema = {"type": "integer", "minimum": 0, "maximum": MAX_REVISION}
        elif name == "draft_id":
            schema = {"type": "string", "pattern": DRAFT_ID_PATTERN}
        else:
            schema = {"type": "string", "pattern": LIBRARY_ID_PATTERN}
        found.append({"name": name, "in": "path", "required": True, "schema": schema})
    for name, description in operation.query:
        found.append(
            {
                "name": name,
                "in": "query",
                "required": False,
                "description": description,
                # An empty value is taken as absent (the default size).
                "schema": {
                    "anyOf": [
                        {"type": "integer", "minimum": 1, "maximum": 100},
                        {"type": "string", "maxLength": 0},
                    ]
                }
                if name == "page_size"
                else {"type": "string"},
            }
        )
    if operation.if_match:
        found.append(
            {
                "name": "If-Match",
                "in": "header",
                "required": False,
                "description": "The draft's etag; a change without it is 428, a stale one 412.",
                "schema": {"type": "string"},
            }
        )
    if operation.idempotent:
        found.append(
            {
                "name": IDEMPOTENCY_HEADER,
                "in": "header",
                "required": False,
                "description": (
                    "Makes a retry safe: the same key and body within a day returns the "
                    "first answer instead of running again. Use a fresh UUID per action."
                ),
                "schema": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": 255,
                    "pattern": "^[!-~]+$",
                },
            }
        )
    if operation.conditional:
        found.append(
            {
                "name": "If-None-Match",
                "in": "header",
                "required": False,
                "schema": {"type": "string"},
            }
        )
    return found


def tier_summary(tiers: Tiers) -> str:
    return "; ".join(
        f"{name} `{tier.rate_limit}` over all calls, `{tier.ai_rate_limit}` and "
        f"`{tier.ai_daily_quota}` for AI calls"
        for name, tier in tiers.tiers.items()
    )


def build_document(settings: GatewaySettings, tiers: Tiers) -> dict[str, Any]:
    models: list[type[BaseModel]] = []
    for operation in OPERATIONS:
        if operation.body is not None and operation.body.model is not None:
            models.append(operation.body.model)
        models.extend(reply.model for reply in operation.replies.values() if reply.model)
        models.extend(model for reply in operation.replies.values() for _, model in reply.events)
    unique = list(dict.fromkeys(models))
    _, definitions = models_json_schema(
        [(model, "validation") for model in unique], ref_template=REF
    )

    keys = settings.api_keys_file is not None

    paths: dict[str, dict[str, Any]] = {}
    for operation in OPERATIONS:
        entry: dict[str, Any] = {
            "operationId": operation.endpoint,
            "summary": operation.summary,
            "description": operation.description,
            "tags": [operation.tag],
            "responses": responses(operation),
        }
        if params := parameters(operation):
            entry["parameters"] = params
        if operation.body is not None:
            entry["requestBody"] = request_body(operation.body)
        entry["security"] = security_of(operation, keys, settings.api_keys_required)
        paths.setdefault(operation.path, {})[operation.method.lower()] = entry

    components: dict[str, Any] = {
        "schemas": definitions.get("$defs", {}),
        "headers": header_components(),
    }
    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "IdeaSnap API",
            "version": settings.release,
            "summary": "A photo in, ideas out.",
            "description": (
                'Every error is `{"error": {"code", "message", "request_id"}}` with the '
                "right status. Send `Authorization: Bearer <Firebase ID token>` to call as "
                "a signed-in person; without it the caller is anonymous. Limits depend on "
                "the tier (anonymous, free, pro: "
                f"{tier_summary(tiers)}) and count per person when signed in, else per "
                "client (API key, else address); a 429 names the limit, the tier and when "
                f"it resets. POSTs accept `{IDEMPOTENCY_HEADER}`. Results are AI-made and "
                "for reference: see [the AI disclaimer](/ai-disclaimer), [privacy](/privacy), "
                "[terms](/terms) and [account deletion](/account/delete)."
            ),
        },
        "servers": [{"url": "/"}],
        "tags": [
            {"name": "snaps", "description": "Photo in, ideas out, in one call."},
            {"name": "uploads", "description": "Stored photos."},
            {"name": "ideas", "description": "Ideas and the presets they are written with."},
            {"name": "library", "description": "A signed-in person's history and change feed."},
            {"name": "drafts", "description": "Drafts that save themselves, with versions."},
            {"name": "account", "description": "The signed-in person: tier, usage, deletion."},
            {"name": "billing", "description": "The purchase provider's webhooks."},
            {"name": "health", "description": "For load balancers and probes."},
        ],
        "paths": paths,
        "components": components,
    }
    components["securitySchemes"] = {
        "FirebaseIdToken": {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "JWT",
            "description": (
                "A Firebase ID token of the signed-in person (`getIdToken()` in the app). "
                "Without one the caller is anonymous where the operation allows it. A bad "
                'or expired token is 401 `invalid_token` with `WWW-Authenticate: Bearer error="'
                'invalid_token"` (refresh it and retry); an operation that needs sign-in '
                "answers 401 `sign_in_required` without one."
            ),
        }
    }
    if keys:
        components["securitySchemes"]["ApiKey"] = {
            "type": "apiKey",
            "in": "header",
            "name": settings.api_key_header,
        }
        document["security"] = (
            [{"ApiKey": []}] if settings.api_keys_required else [{"ApiKey": []}, {}]
        )
    return document


def security_of(operation: Operation, keys: bool, keys_required: bool) -> list[dict[str, Any]]:
    """Which credentials an operation accepts: a token (required or optional), an API key."""
    if not operation.limited:
        return []
    token: list[dict[str, Any]] = [{"FirebaseIdToken": []}]
    if operation.sign_in == "optional":
        token.append({})
    if not keys:
        return token
    if keys_required:
        return [{**choice, "ApiKey": []} for choice in token]
    return [*({**choice, "ApiKey": []} for choice in token), *token]
