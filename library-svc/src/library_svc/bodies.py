"""JSON request bodies: bounded in size, parsed into a typed model, clear errors."""

from __future__ import annotations

import json
from typing import Any, TypeVar

from flask import request
from pydantic import BaseModel, ValidationError

from chassis.errors import ApiError

ModelT = TypeVar("ModelT", bound=BaseModel)


def too_large(limit: int) -> ApiError:
    return ApiError(
        413,
        "payload_too_large",
        f"The body is larger than {limit} bytes.",
        details={"limit": limit},
    )


def json_object(limit: int) -> dict[str, Any]:
    if request.content_length is not None and request.content_length > limit:
        raise too_large(limit)
    data = request.stream.read(limit + 1)
    if len(data) > limit:
        raise too_large(limit)
    if request.mimetype != "application/json":
        raise ApiError(415, "unsupported_media_type", "Send the body as application/json.")
    try:
        value = json.loads(data or b"null")
    except ValueError:
        raise ApiError(400, "invalid_json", "The body is not valid JSON.") from None
    if not isinstance(value, dict):
        raise ApiError(400, "invalid_json", "The body must be a JSON object.")
    return value


def parsed(model: type[ModelT], limit: int) -> ModelT:
    raw = json_object(limit)
    try:
        return model.model_validate(raw)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "body"
        raise ApiError(
            422, "invalid_request", f"{where}: {first['msg']}", details={"field": where}
        ) from None
