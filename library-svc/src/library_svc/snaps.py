"""History: the snaps a signed-in person made, and admission against their tier's limits.

Internal (the gateway only): ``POST /internal/snaps`` records a snap the gateway just
answered (idempotent per upload: a retried record is the same snap), and
``POST /internal/admission`` says before an upload whether the person may keep one
more snap of ``bytes`` bytes (204) or not (403 ``history_limit_reached`` /
``storage_quota_exceeded`` with the limit, what is used and the tier).

Public: ``GET /v1/snaps`` newest first with ``page_size`` / ``page_token`` /
``next_page_token``; ``GET`` and ``DELETE /v1/snaps/<id>`` (deleting removes the photo
from upload-svc first, then the record, leaving a tombstone for the change feed).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request
from flask.typing import ResponseReturnValue
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import delete, or_, select
from sqlalchemy.exc import IntegrityError

from chassis.caller import current_caller
from chassis.errors import ApiError
from chassis.tiers import Tier
from library_svc.access import lock_person, signed_in_user
from library_svc.bodies import parsed
from library_svc.database import db
from library_svc.drafts import iso
from library_svc.entitlements import tier_of
from library_svc.models import Snap, Tombstone, utcnow
from library_svc.page_tokens import page_size
from library_svc.settings import LibrarySettings
from library_svc.uploads_client import UploadsClient
from library_svc.usage import history_count, storage_used

blueprint = Blueprint("snaps", __name__)
SNAP = "snap"
ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"


class UploadRecord(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: str = Field(pattern=ID_PATTERN)
    size: int = Field(ge=0)
    content_type: str = Field(max_length=64)
    width: int = Field(ge=0)
    height: int = Field(ge=0)
    sha256: str = Field(max_length=64)


class Preset(BaseModel):
    model_config = ConfigDict(extra="ignore")

    template: str = Field(max_length=64)
    tone: str | None = Field(default=None, max_length=64)
    language: str | None = Field(default=None, max_length=16)
    count: int | None = Field(default=None, ge=1, le=50)


class SnapRecord(BaseModel):
    model_config = ConfigDict(extra="ignore")

    upload: UploadRecord
    preset: Preset
    ideas: list[dict[str, Any]]
    provider: str = Field(max_length=64)
    model: str | None = Field(default=None, max_length=128)
    usage: dict[str, Any] | None = None


class Admission(BaseModel):
    model_config = ConfigDict(extra="forbid")

    bytes: int = Field(ge=0)


def settings() -> LibrarySettings:
    return current_app.config["SETTINGS"]


def uploads() -> UploadsClient:
    return current_app.extensions["uploads"]


def limits_for(tier: str) -> Tier:
    return current_app.extensions["tiers"][tier]


def snap_json(snap: Snap) -> dict[str, Any]:
    return {
        "id": snap.id,
        "created_at": iso(snap.created_at),
        "upload": {
            "id": snap.upload_id,
            "size": snap.upload_size,
            "content_type": snap.content_type,
            "width": snap.width,
            "height": snap.height,
            "sha256": snap.sha256,
            "urls": {
                "image": f"/v1/uploads/{snap.upload_id}",
                "thumbnail": f"/v1/uploads/{snap.upload_id}/thumbnail",
            },
        },
        "preset": snap.preset,
        "ideas": snap.ideas,
        "provider": snap.provider,
        "model": snap.model,
        "usage": snap.usage,
    }


def snap_of_upload(owner: str, upload_id: str) -> Snap | None:
    return db().scalar(select(Snap).where(Snap.owner == owner, Snap.upload_id == upload_id))


@blueprint.post("/internal/snaps")
def record_snap() -> ResponseReturnValue:
    owner = signed_in_user()
    record = parsed(SnapRecord, settings().max_snap_record_bytes)
    session = db()
    if (existing := snap_of_upload(owner, record.upload.id)) is not None:
        return jsonify(snap_json(existing))
    seq = lock_person(session, owner)
    if (existing := snap_of_upload(owner, record.upload.id)) is not None:
        session.rollback()
        return jsonify(snap_json(existing))
    snap = Snap(
        id=uuid.uuid4().hex,
        owner=owner,
        created_at=utcnow(),
        change_seq=seq,
        upload_id=record.upload.id,
        upload_size=record.upload.size,
        content_type=record.upload.content_type,
        width=record.upload.width,
        height=record.upload.height,
        sha256=record.upload.sha256,
        preset=record.preset.model_dump(exclude_none=True),
        ideas=record.ideas,
        provider=record.provider,
        model=record.model,
        usage=record.usage,
    )
    session.add(snap)
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        existing = snap_of_upload(owner, record.upload.id)
        if existing is None:
            raise
        return jsonify(snap_json(existing))
    response = jsonify(snap_json(snap))
    response.status_code = 201
    response.headers["Location"] = f"/v1/snaps/{snap.id}"
    return response


@blueprint.post("/internal/admission")
def admission() -> ResponseReturnValue:
    owner = signed_in_user()
    wanted = parsed(Admission, 1024).bytes
    session = db()
    tier = tier_of(session, owner, settings().pro_entitlement_id)
    limits = limits_for(tier)
    kept = history_count(session, owner)
    if kept >= limits.history_size:
        raise ApiError(
            403,
            "history_limit_reached",
            f"The {tier} tier keeps {limits.history_size} snaps; delete some to make more.",
            details={"limit": limits.history_size, "used": kept, "tier": tier},
        )
    used = storage_used(session, uploads(), owner)
    if used + wanted > limits.storage_quota_bytes:
        raise ApiError(
            403,
            "storage_quota_exceeded",
            f"The {tier} tier stores {limits.storage_quota_bytes} bytes of photos.",
            details={"limit": limits.storage_quota_bytes, "used": used, "tier": tier},
        )
    return Response(status=204)


def position_of(raw: Any) -> tuple[datetime, str]:
    try:
        created, snap_id = raw
        return datetime.fromisoformat(created), str(snap_id)
    except (TypeError, ValueError):
        raise ApiError(
            400, "invalid_page_token", "The page token is not valid for this list."
        ) from None


@blueprint.get("/v1/snaps")
def list_snaps() -> ResponseReturnValue:
    owner = signed_in_user()
    tokens = current_app.extensions["page_tokens"]
    size = page_size(request.args.get("page_size"), settings().max_page_size)
    query = select(Snap).where(Snap.owner == owner)
    if raw := request.args.get("page_token"):
        created, snap_id = position_of(tokens.decode(raw, "snaps", owner))
        query = query.where(
            or_(Snap.created_at < created, (Snap.created_at == created) & (Snap.id < snap_id))
        )
    rows = list(
        db().scalars(query.order_by(Snap.created_at.desc(), Snap.id.desc()).limit(size + 1))
    )
    next_token = None
    if len(rows) > size:
        rows = rows[:size]
        last = rows[-1]
        next_token = tokens.encode("snaps", owner, [last.created_at.isoformat(), last.id])
    return jsonify(snaps=[snap_json(row) for row in rows], next_page_token=next_token)


def owned_snap(owner: str, snap_id: str) -> Snap:
    snap = db().scalar(select(Snap).where(Snap.owner == owner, Snap.id == snap_id))
    if snap is None:
        raise ApiError(404, "snap_not_found", "No snap with this id.")
    return snap


@blueprint.get("/v1/snaps/<snap_id>")
def get_snap(snap_id: str) -> ResponseReturnValue:
    return jsonify(snap_json(owned_snap(signed_in_user(), snap_id)))


@blueprint.delete("/v1/snaps/<snap_id>")
def delete_snap(snap_id: str) -> ResponseReturnValue:
    owner = signed_in_user()
    session = db()
    snap = owned_snap(owner, snap_id)
    upload_id = snap.upload_id
    session.rollback()
    uploads().delete_upload(upload_id, current_caller())
    seq = lock_person(session, owner)
    removed = session.execute(delete(Snap).where(Snap.owner == owner, Snap.id == snap_id))
    if removed.rowcount != 1:  # type: ignore[attr-defined]
        session.rollback()
        return Response(status=204)
    session.add(Tombstone(owner=owner, kind=SNAP, object_id=snap_id, change_seq=seq))
    session.commit()
    return Response(status=204)
