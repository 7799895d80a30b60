"""The public API routes. Only what is listed here is reachable through the gateway."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify
from flask.typing import ResponseReturnValue

from chassis.outgoing import ServiceClient
from gateway.proxy import forward
from gateway.settings import GatewaySettings
from gateway.snaps import create_snap

blueprint = Blueprint("public", __name__)


def settings() -> GatewaySettings:
    return current_app.config["SETTINGS"]


def client(name: str) -> ServiceClient:
    return current_app.extensions["upstreams"][name]


def to_uploads(path: str) -> Response:
    config = settings()
    return forward(
        client("upload"),
        path,
        read_timeout=config.upload_read_timeout_seconds,
        body_limit=config.max_body_bytes,
    )


def to_ai(path: str) -> Response:
    config = settings()
    return forward(
        client("ai"), path, read_timeout=config.ai_read_timeout_seconds, body_limit=64 * 1024
    )


@blueprint.post("/v1/snaps")
def snaps() -> ResponseReturnValue:
    response = jsonify(create_snap(client("upload"), client("ai"), settings()))
    response.status_code = 201
    return response


@blueprint.post("/v1/uploads")
def create_upload() -> ResponseReturnValue:
    return to_uploads("/v1/uploads")


@blueprint.route("/v1/uploads/<upload_id>", methods=["GET", "DELETE"])
def upload(upload_id: str) -> ResponseReturnValue:
    return to_uploads(f"/v1/uploads/{upload_id}")


@blueprint.get("/v1/uploads/<upload_id>/thumbnail")
def thumbnail(upload_id: str) -> ResponseReturnValue:
    return to_uploads(f"/v1/uploads/{upload_id}/thumbnail")


@blueprint.post("/v1/ideas")
def ideas() -> ResponseReturnValue:
    return to_ai("/v1/ideas")


@blueprint.get("/v1/presets")
def presets() -> ResponseReturnValue:
    return to_ai("/v1/presets")
