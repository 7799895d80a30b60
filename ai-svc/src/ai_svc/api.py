"""ai-svc HTTP API: ``POST /v1/ideas`` and ``GET /v1/presets``."""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify, request
from flask.typing import ResponseReturnValue
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ai_svc.ideas import IdeaService
from ai_svc.presets import Catalogue
from ai_svc.streaming import IdeaStreams, wants_stream
from chassis.errors import ApiError
from chassis.requests_context import current_request_id

blueprint = Blueprint("ideas", __name__)


class IdeasRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    upload_id: str = Field(pattern=r"^[0-9a-f]{32}$")
    template: str | None = None
    tone: str | None = None
    language: str | None = None
    count: int | None = None


def catalogue() -> Catalogue:
    return current_app.extensions["catalogue"]


@blueprint.get("/v1/presets")
def presets() -> ResponseReturnValue:
    response = jsonify(catalogue().public())
    response.headers["Cache-Control"] = "public, max-age=300"
    return response


@blueprint.post("/v1/ideas")
def ideas() -> ResponseReturnValue:
    payload = request.get_json(silent=True)
    if not isinstance(payload, dict):
        raise ApiError(400, "invalid_json", "Send a JSON object.")
    try:
        body = IdeasRequest.model_validate(payload)
    except ValidationError as error:
        raise ApiError(
            422,
            "invalid_request",
            "The request fields are not valid.",
            details={
                "fields": [
                    {"field": ".".join(map(str, item["loc"])), "message": item["msg"]}
                    for item in error.errors(include_url=False)
                ]
            },
        ) from None
    preset = catalogue().resolve(body.template, body.tone, body.language, body.count)
    if wants_stream(request.accept_mimetypes):
        streams: IdeaStreams = current_app.extensions["idea_streams"]
        return streams.respond(
            body.upload_id,
            preset,
            request_id=current_request_id(),
            client=request.environ.get("gunicorn.socket"),
        )
    service: IdeaService = current_app.extensions["ideas"]
    return jsonify(service.ideas(body.upload_id, preset))


@blueprint.get("/internal/provider")
def provider() -> ResponseReturnValue:
    """Which model provider answers, for the gateway's public privacy and disclaimer pages.

    The pages name the third party that sees a person's photo; asking the service that
    makes the call keeps them true to the running configuration.
    """
    chosen = current_app.extensions["provider"]
    return jsonify({"provider": chosen.name, "model": chosen.model})
