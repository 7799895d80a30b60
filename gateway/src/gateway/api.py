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
from gateway.auth import current_caller
from gateway.contract import (
    DRAFT_ID_PATTERN,
    LIBRARY_ID_PATTERN,
    MAX_REVISION,
    OPERATIONS,
    UPLOAD_ID_PATTERN,
)
from gateway.idempotency import Idempotency
from gateway.identity import Identity, user_bucket
from gateway.proxy import Upstream, forward
from gateway.ratelimits import clear_counters
from gateway.settings import GatewaySettings
from gateway.snaps import create_snap
from gateway.streaming import ideas_stream, replayed_stream, snap_stream, wants_stream

BLUEPRINT = "public"
UPLOAD_ID = re.compile(UPLOAD_ID_PATTERN)
LIBRARY_ID = re.compile(LIBRARY_ID_PATTERN)
DRAFT_ID = re.compile(DRAFT_ID_PATTERN)


@dataclass(frozen=True)
class Edge:
    """What the views need, built once per worker by the app factory."""

    settings: GatewaySettings
    uploads: Upstream
    ai: Upstream
    library: Upstream
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
        partial(
            snap_stream,
            uploads=state.uploads,
            ai=state.ai,
            library=state.library,
            settings=state.settings,
        )
        if wants_stream()
        else None
    )
    return state.idempotency.run(
        lambda: create_snap(state.uploads, state.ai, state.library, state.settings, stream),
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


def to_library(path: str, *, body: bool = False, authorization: bool = False) -> Response:
    """The current request to library-svc at ``path``, as the verified caller.

    The client's ``Authorization`` is never sent on (for a person it is their Firebase
    ID token, which no service behind the gateway may see), except on the billing
    webhook, where it is the purchase provider's shared secret that library-svc checks.
    """
    state = edge()
    config = state.settings
    extra = {}
    if authorization and "Authorization" in request.headers:
        extra["Authorization"] = request.headers["Authorization"]
    return forward(
        state.library,
        path,
        read_timeout=config.library_read_timeout_seconds,
        body_limit=config.max_library_json_bytes if body else None,
        extra_headers=extra,
    )


def checked_snap(snap_id: str) -> str:
    if not LIBRARY_ID.match(snap_id):
        raise ApiError(404, "snap_not_found", "No snap with this id.")
    return snap_id


def checked_draft(draft_id: str) -> str:
    if not DRAFT_ID.match(draft_id):
        raise ApiError(400, "invalid_draft_id", "A draft id is a UUID made by the app.")
    return draft_id


def forget_person(app: Flask, uid: str) -> None:
    """Clear a person's rate-limit and quota counters and stored idempotent answers.

    For account deletion: ``DELETE /v1/me`` calls it once library-svc has begun deleting
    the account (from then on every request of that person is refused there).
    """
    bucket = user_bucket(uid)
    state: Edge = app.extensions["gateway"]
    authenticator = app.extensions["gateway_auth"]
    clear_counters(app.extensions["gateway_limiter"], authenticator.tiers, bucket)
    state.idempotency.forget(bucket)


def get_me_view() -> Response:
    return to_library("/v1/me")


def delete_me_view() -> Response:
    """Delete the account in library-svc; once it has begun, forget the person's counters."""
    uid = current_caller().user
    response = to_library("/v1/me")
    if uid is not None and response.status_code in (200, 202, 204):
        forget_person(current_app, uid)
    return response


def export_me_view() -> Response:
    return to_library("/v1/me/export")


def list_snaps_view() -> Response:
    return to_library("/v1/snaps")


def get_snap_view(snap_id: str) -> Response:
    return to_library(f"/v1/snaps/{checked_snap(snap_id)}")


def delete_snap_view(snap_id: str) -> Response:
    return to_library(f"/v1/snaps/{checked_snap(snap_id)}")


def draft_view(draft_id: str) -> Response:
    return to_library(
        f"/v1/drafts/{checked_draft(draft_id)}", body=request.method in ("PUT", "PATCH")
    )


def revisions_view(draft_id: str) -> Response:
    return to_library(f"/v1/drafts/{checked_draft(draft_id)}/revisions")


def restore_view(draft_id: str, rev: int) -> Response:
    if rev > MAX_REVISION:
        raise ApiError(404, "revision_not_found", "This draft has no such revision.")
    return to_library(f"/v1/drafts/{checked_draft(draft_id)}/revisions/{rev}:restore", body=True)


def sync_view() -> Response:
    return to_library("/v1/sync/changes")


def billing_view() -> Response:
    return to_library("/v1/billing/events", body=True, authorization=True)


VIEWS: dict[str, Callable[..., Response]] = {
    "get_me": get_me_view,
    "delete_me": delete_me_view,
    "export_me": export_me_view,
    "list_snaps": list_snaps_view,
    "get_snap": get_snap_view,
    "delete_snap": delete_snap_view,
    "put_draft": draft_view,
    "get_draft": draft_view,
    "patch_draft": draft_view,
    "delete_draft": draft_view,
    "list_revisions": revisions_view,
    "restore_revision": restore_view,
    "sync_changes": sync_view,
    "billing_event": billing_view,
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
