"""The signed-in person: ``GET /v1/me``, ``DELETE /v1/me``, ``GET /v1/me/export``.

``GET /v1/me`` says what library-svc knows: the tier (from the entitlements), its
limits, today's snaps, the entitlements and the features they turn on (``ads`` is off
for pro), history and storage used. ``DELETE /v1/me`` deletes the account (see
:mod:`library_svc.deletion`): 204 once everything is gone, 202 with the pending
deletion when a step failed (a retry, or the sweep, finishes it). ``GET /v1/me/export``
streams one zip: ``library.json`` (account, snaps, drafts with every revision,
entitlements, purchases) and ``photos/<upload id>.<ext>`` fetched from upload-svc one
at a time, so the archive is never held in memory.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Iterator
from typing import Any

import structlog
from flask import Blueprint, Response, current_app, jsonify
from flask.typing import ResponseReturnValue
from sqlalchemy import select

from chassis.caller import current_caller
from library_svc import deletion
from library_svc.access import signed_in_user
from library_svc.claims import FirebaseAccounts
from library_svc.database import db
from library_svc.drafts import draft_json, iso, revision_json
from library_svc.entitlements import entitlement_json, entitlements_of, tier_of
from library_svc.models import BillingEvent, Draft, DraftRevision, Snap
from library_svc.settings import LibrarySettings
from library_svc.snaps import snap_json
from library_svc.uploads_client import UploadsClient
from library_svc.usage import history_count, snaps_today, storage_counted

log = structlog.get_logger(__name__)
blueprint = Blueprint("account", __name__)
EXTENSIONS = {"image/jpeg": "jpg", "image/png": "png", "image/webp": "webp", "image/heic": "heic"}
CHUNK = 64 * 1024


def settings() -> LibrarySettings:
    return current_app.config["SETTINGS"]


def uploads() -> UploadsClient:
    return current_app.extensions["uploads"]


def accounts() -> FirebaseAccounts:
    return current_app.extensions["firebase"]


def me_json(uid: str) -> dict[str, Any]:
    session = db()
    tier = tier_of(session, uid, settings().pro_entitlement_id)
    limits = current_app.extensions["tiers"][tier]
    day, today = snaps_today(session, uid)
    used, counted_by = storage_counted(session, uploads(), uid)
    return {
        "uid": uid,
        "tier": tier,
        "limits": {
            "history_size": limits.history_size,
            "storage_bytes": limits.storage_quota_bytes,
        },
        "usage": {"date": day, "snaps": today},
        "entitlements": [entitlement_json(item) for item in entitlements_of(session, uid)],
        "features": {"ads": tier != "pro"},
        "history": {"snaps": history_count(session, uid), "limit": limits.history_size},
        "storage": {
            "used_bytes": used,
            "limit_bytes": limits.storage_quota_bytes,
            "counted_by": counted_by,
        },
    }


@blueprint.get("/v1/me")
def get_me() -> ResponseReturnValue:
    return jsonify(me_json(signed_in_user()))


@blueprint.delete("/v1/me")
def delete_me() -> ResponseReturnValue:
    uid = signed_in_user()
    session = db()
    record = deletion.begin(session, uid)
    if deletion.finish(session, uploads(), accounts(), uid):
        return Response(status=204)
    response = jsonify(
        deletion={
            "status": "pending",
            "requested_at": iso(record.requested_at),
            "message": "Deletion has begun and will be finished; nothing can be added now.",
        }
    )
    response.status_code = 202
    return response


class ArchiveSink:
    """A write-only file for zipfile that hands its bytes on instead of keeping them."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.position = 0

    def write(self, data: bytes) -> int:
        self.chunks.append(bytes(data))
        self.position += len(data)
        return len(data)

    def tell(self) -> int:
        return self.position

    def flush(self) -> None:
        return None

    def drain(self) -> bytes:
        out = b"".join(self.chunks)
        self.chunks.clear()
        return out


def library_document(uid: str) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    session = db()
    snaps = list(session.scalars(select(Snap).where(Snap.owner == uid).order_by(Snap.created_at)))
    drafts = []
    for draft in session.scalars(select(Draft).where(Draft.owner == uid).order_by(Draft.id)):
        revisions = session.scalars(
            select(DraftRevision)
            .where(DraftRevision.owner == uid, DraftRevision.draft_id == draft.id)
            .order_by(DraftRevision.rev)
        )
        drafts.append({**draft_json(draft), "revisions": [revision_json(r) for r in revisions]})
    purchases = [
        {
            "event_id": event.id,
            "type": event.type,
            "at": iso(event.received_at),
            "product_id": event.product_id,
            "store": event.store,
            "transaction_id": event.transaction_id,
            "price": event.price,
            "currency": event.currency,
        }
        for event in session.scalars(
            select(BillingEvent).where(BillingEvent.owner == uid).order_by(BillingEvent.event_at_ms)
        )
    ]
    document = {
        "account": me_json(uid),
        "snaps": [snap_json(snap) for snap in snaps],
        "drafts": drafts,
        "purchases": purchases,
    }
    photos = [(snap.upload_id, EXTENSIONS.get(snap.content_type, "bin")) for snap in snaps]
    return document, photos


def archive(
    document: dict[str, Any], photos: list[tuple[str, str]], client: UploadsClient, caller: Any
) -> Iterator[bytes]:
    sink = ArchiveSink()
    missing: list[str] = []
    with zipfile.ZipFile(sink, "w") as zipped:
        zipped.writestr(
            "library.json",
            json.dumps(document, ensure_ascii=False, indent=2),
            compress_type=zipfile.ZIP_DEFLATED,
        )
        yield sink.drain()
        for upload_id, extension in photos:
            try:
                with client.photo(upload_id, caller) as answer:
                    if answer is None:
                        missing.append(upload_id)
                        continue
                    with zipped.open(
                        f"photos/{upload_id}.{extension}", "w", force_zip64=True
                    ) as entry:
                        for chunk in answer.iter_content(CHUNK):
                            entry.write(chunk)
                            if sink.position and len(sink.chunks) > 4:
                                yield sink.drain()
            except Exception as error:
                log.warning("export_photo_failed", upload_id=upload_id, error=str(error))
                missing.append(upload_id)
            yield sink.drain()
        if missing:
            zipped.writestr("photos/missing.json", json.dumps({"missing": missing}))
    yield sink.drain()


@blueprint.get("/v1/me/export")
def export() -> ResponseReturnValue:
    uid = signed_in_user()
    document, photos = library_document(uid)
    db().close()
    stream = archive(document, photos, uploads(), current_caller())
    response = Response(stream, mimetype="application/zip")
    response.headers["Content-Disposition"] = 'attachment; filename="ideasnap-library.zip"'
    response.headers["Cache-Control"] = "private, no-store"
    return response
