"""The public API routes, registered from :data:`gateway.contract.OPERATIONS`.

Only what is listed there is reachable through the gateway: internal service routes
(``/internal/...``) and ``/metrics`` have no route here, so they are a 404 on the public
port whatever the services behind expose.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from flask import Blueprint, Flask, Response, current_app, request

from chassis.errors import ApiError
from gateway.contract import OPERATIONS, UPLOAD_ID_PATTERN
from gateway.idempotency import Idempotency
from gateway.identity import Identity
from gateway.proxy import Upstream, forward
from gateway.settings import GatewaySettings
from gateway.snaps import create_snap
from gateway.streaming import ideas_stream, replayed_stream, snap_stream, wants_stream

BLUEPRINT = "public"
UPLOAD_ID = re.compile(UPLOAD_ID_PATTERN)


@dataclass(frozen=True)
class Edge:
    """What the views need, built once per worker by the app factory."""

    settings: GatewaySettings
    uploads: Upstream
    ai: Upstream
    idempotency: Idempotency
    identity: Identity


def edge() -> Edge:
    return current_app.extensions["gateway"]


def checked(upload_id: str) -> str:
    if not UPLOAD_ID.match(upload_id):
        raise ApiError(404, "upload_not_found", "No upload with this id.")
    return upload_id


def snap_view() -> Response:
    state = edge()
    stream = (
        partial(snap_stream, uploads=state.uploads, ai=state.ai, settings=state.settings)
        if wants_stream()
        else None
    )
    return state.idempotency.run(
        lambda: create_snap(state.uploads, state.ai, state.settings, stream),
        replay_as=replayed_stream,
    )


def create_upload_view() -> Response:
    state = edge()
    config = state.settings
    return state.idempotency.run(
        lambda: forward(
            state.uploads,
            "/v1/uploads",
            read_timeout=config.upload_read_timeout_seconds,
            body_limit=config.max_body_bytes,
            keep_small=config.idempotency_max_body_bytes,
        )
    )


def get_upload_view(upload_id: str) -> Response:
    state = edge()
    return forward(
        state.uploads,
        f"/v1/uploads/{checked(upload_id)}",
        read_timeout=state.settings.fetch_read_timeout_seconds,
    )


def delete_upload_view(upload_id: str) -> Response:
    state = edge()
    return forward(
        state.uploads,
        f"/v1/uploads/{checked(upload_id)}",
        read_timeout=state.settings.fetch_read_timeout_seconds,
    )


def thumbnail_view(upload_id: str) -> Response:
    state = edge()
    return forward(
        state.uploads,
        f"/v1/uploads/{checked(upload_id)}/thumbnail",
        read_timeout=state.settings.fetch_read_timeout_seconds,
    )


def ideas_view() -> Response:
    state = edge()
    config = state.settings
    if request.mimetype != "application/json":
        raise ApiError(415, "unsupported_media_type", "Send the request as application/json.")
    if wants_stream():
        return state.idempotency.run(
            lambda: ideas_stream(state.ai, config), replay_as=replayed_stream
        )
    return state.idempotency.run(
        lambda: forward(
            state.ai,
            "/v1/ideas",
            read_timeout=config.ai_read_timeout_seconds,
            body_limit=config.max_json_bytes,
            keep_small=config.idempotency_max_body_bytes,
        )
    )


def presets_view() -> Response:
    state = edge()
    return forward(
        state.ai, "/v1/presets", read_timeout=state.settings.presets_read_timeout_seconds
    )


VIEWS: dict[str, Callable[..., Response]] = {
    "create_snap": snap_view,
    "create_upload": create_upload_view,
    "get_upload": get_upload_view,
    "delete_upload": delete_upload_view,
    "get_thumbnail": thumbnail_view,
    "create_ideas": ideas_view,
    "get_presets": presets_view,
}


@dataclass(frozen=True)
class PublicApi:
    limited: frozenset[str]
    """Flask endpoints subject to identity, limits and quotas."""
    costs_ai: frozenset[str]
    sign_in_required: frozenset[str]


def register_public_api(app: Flask) -> PublicApi:
    blueprint = Blueprint(BLUEPRINT, __name__)
    limited, costs_ai, sign_in_required = set(), set(), set()
    for operation in OPERATIONS:
        view = VIEWS.get(operation.endpoint)
        if view is None:
            continue  # served by the chassis (health)
        blueprint.add_url_rule(operation.rule, operation.endpoint, view, methods=[operation.method])
        endpoint = f"{BLUEPRINT}.{operation.endpoint}"
        if operation.limited:
            limited.add(endpoint)
        if operation.costs_ai:
            costs_ai.add(endpoint)
        if operation.sign_in == "required":
            sign_in_required.add(endpoint)
    app.register_blueprint(blueprint)
    return PublicApi(frozenset(limited), frozenset(costs_ai), frozenset(sign_in_required))
