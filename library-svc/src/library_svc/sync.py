"""The change feed for offline sync: ``GET /v1/sync/changes?cursor=&page_size=``.

Every snap, draft and tombstone carries the person's change sequence number of its last
change. A page reads the person's current sequence first and returns only changes up
to it: that number committed means every smaller one has committed too (they were
assigned under the same row lock), so no change can appear behind a cursor already
handed out. An object changed twice appears once, at its latest change.

Tombstones are kept for ``TOMBSTONE_RETENTION_SECONDS`` (30 days by default). Pruning
them raises the person's ``pruned_seq``; a cursor older than that could miss a deletion,
so it gets 410 ``full_resync_required`` and the client starts again with no cursor.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from flask import Blueprint, current_app, jsonify, request
from flask.typing import ResponseReturnValue
from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from chassis.errors import ApiError
from library_svc.access import signed_in_user
from library_svc.database import db
from library_svc.drafts import draft_json, iso
from library_svc.models import Draft, Person, Snap, Tombstone, utcnow
from library_svc.page_tokens import page_size
from library_svc.settings import LibrarySettings
from library_svc.snaps import snap_json

blueprint = Blueprint("sync", __name__)
CURSOR = "sync"


def settings() -> LibrarySettings:
    return current_app.config["SETTINGS"]


def prune_tombstones(session: Session, uid: str | None, retention_seconds: float) -> int:
    """Drop tombstones past retention (one person's, or everyone's); how many went."""
    cutoff = utcnow() - timedelta(seconds=retention_seconds)
    query = select(Tombstone.owner, func.max(Tombstone.change_seq)).where(
        Tombstone.deleted_at < cutoff
    )
    if uid is not None:
        query = query.where(Tombstone.owner == uid)
    floors = session.execute(query.group_by(Tombstone.owner)).all()
    removed = 0
    for owner, floor in floors:
        session.execute(
            update(Person)
            .where(Person.uid == owner, Person.pruned_seq < floor)
            .values(pruned_seq=floor)
        )
        result = session.execute(
            delete(Tombstone).where(
                Tombstone.owner == owner,
                Tombstone.deleted_at < cutoff,
                Tombstone.change_seq <= floor,
            )
        )
        removed += result.rowcount  # type: ignore[attr-defined]
    session.commit()
    return removed


def change(seq: int, kind: str, object_id: str, data: dict[str, Any] | None) -> dict[str, Any]:
    return {
        "seq": seq,
        "kind": kind,
        "op": "delete" if data is None else "upsert",
        "id": object_id,
        "data": data,
    }


@blueprint.get("/v1/sync/changes")
def changes() -> ResponseReturnValue:
    owner = signed_in_user()
    config = settings()
    tokens = current_app.extensions["page_tokens"]
    size = page_size(request.args.get("page_size"), config.max_page_size, default=100)
    after = 0
    if raw := request.args.get("cursor"):
        position = tokens.decode(raw, CURSOR, owner, code="invalid_cursor")
        if not isinstance(position, int) or position < 0:
            raise ApiError(400, "invalid_cursor", "The cursor is not valid.")
        after = position
    session = db()
    prune_tombstones(session, owner, config.tombstone_retention_seconds)
    person = session.scalar(
        select(Person).where(Person.uid == owner).execution_options(populate_existing=True)
    )
    high = person.change_seq if person else 0
    if raw and person is not None and after < person.pruned_seq:
        raise ApiError(
            410,
            "full_resync_required",
            "Deletions older than this cursor are no longer kept; sync again from the start.",
            details={"retention_seconds": config.tombstone_retention_seconds},
        )
    found: list[dict[str, Any]] = []
    for model, kind in ((Snap, "snap"), (Draft, "draft")):
        rows = session.scalars(
            select(model)
            .where(model.owner == owner, model.change_seq > after, model.change_seq <= high)
            .order_by(model.change_seq)
            .limit(size + 1)
        )
        for row in rows:
            data = snap_json(row) if kind == "snap" else draft_json(row)
            found.append(change(row.change_seq, kind, row.id, data))
    for gone in session.scalars(
        select(Tombstone)
        .where(Tombstone.owner == owner, Tombstone.change_seq > after, Tombstone.change_seq <= high)
        .order_by(Tombstone.change_seq)
        .limit(size + 1)
    ):
        item = change(gone.change_seq, gone.kind, gone.object_id, None)
        item["deleted_at"] = iso(gone.deleted_at)
        found.append(item)
    found.sort(key=lambda item: item["seq"])
    has_more = len(found) > size
    page = found[:size]
    through = page[-1]["seq"] if has_more else max(high, after)
    return jsonify(
        changes=page, next_cursor=tokens.encode(CURSOR, owner, through), has_more=has_more
    )
