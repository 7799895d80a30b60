"""Drafts and their versions: ``/v1/drafts/<uuid>``.

Changes are optimistic. Every answer carries the draft's ``ETag`` (and ``etag`` in the
body); a change (PUT over an existing draft, PATCH, DELETE, restore) must send it back
in ``If-Match``: without it 428 ``precondition_required``, with a stale one 412
``precondition_failed`` whose ``details.current`` is the draft as it is now. The check
is made after the person's row lock is taken and the update itself is conditional on
the version, so of two changes sent with the same etag exactly one wins.

Every save is a revision. A save marked ``"autosave": true`` folds into the latest
revision when that one is an autosave begun less than ``AUTOSAVE_WINDOW_SECONDS`` ago,
so a person typing makes one revision per window, not hundreds. A restore copies an
old revision into the draft as a new revision.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request
from flask.typing import ResponseReturnValue
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from chassis.errors import ApiError
from library_svc.access import lock_person, signed_in_user
from library_svc.bodies import parsed
from library_svc.database import db
from library_svc.models import Draft, DraftRevision, Tombstone, utcnow
from library_svc.page_tokens import page_size
from library_svc.settings import LibrarySettings

blueprint = Blueprint("drafts", __name__)
DRAFT = "draft"


class DraftContent(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: str = Field(default="", max_length=500)
    body: str = ""
    snap_id: str | None = Field(default=None, max_length=32)


class DraftPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: str | None = Field(default=None, max_length=500)
    body: str | None = None
    snap_id: str | None = Field(default=None, max_length=32)
    autosave: bool = False


def settings() -> LibrarySettings:
    return current_app.config["SETTINGS"]


def checked_id(draft_id: str) -> str:
    try:
        parsed_id = uuid.UUID(draft_id)
    except ValueError:
        raise ApiError(400, "invalid_draft_id", "A draft id is a UUID made by the app.") from None
    return str(parsed_id)


def etag_of(draft: Draft) -> str:
    return f"v{draft.version}"


def iso(moment: datetime | None) -> str | None:
    return moment.isoformat().replace("+00:00", "Z") if moment else None


def draft_json(draft: Draft) -> dict[str, Any]:
    return {
        "id": draft.id,
        "title": draft.title,
        "body": draft.body,
        "snap_id": draft.snap_id,
        "version": draft.version,
        "etag": f'"{etag_of(draft)}"',
        "created_at": iso(draft.created_at),
        "updated_at": iso(draft.updated_at),
    }


def revision_json(revision: DraftRevision) -> dict[str, Any]:
    return {
        "rev": revision.rev,
        "kind": revision.kind,
        "restored_from": revision.restored_from,
        "title": revision.title,
        "body": revision.body,
        "snap_id": revision.snap_id,
        "saves": revision.saves,
        "created_at": iso(revision.created_at),
        "updated_at": iso(revision.updated_at),
    }


def draft_response(draft: Draft, status: int = 200) -> Response:
    response = jsonify(draft_json(draft))
    response.status_code = status
    response.set_etag(etag_of(draft))
    response.headers["Cache-Control"] = "private, no-cache"
    if status == 201:
        response.headers["Location"] = f"/v1/drafts/{draft.id}"
    return response


def load(session: Session, owner: str, draft_id: str) -> Draft | None:
    return session.scalar(
        select(Draft)
        .where(Draft.owner == owner, Draft.id == draft_id)
        .execution_options(populate_existing=True)
    )


def tombstone(session: Session, owner: str, kind: str, object_id: str) -> Tombstone | None:
    return session.scalar(
        select(Tombstone).where(
            Tombstone.owner == owner, Tombstone.kind == kind, Tombstone.object_id == object_id
        )
    )


def missing(session: Session, owner: str, draft_id: str) -> ApiError:
    gone = tombstone(session, owner, DRAFT, draft_id)
    if gone is not None:
        return ApiError(
            410,
            "draft_deleted",
            "This draft was deleted.",
            details={"deleted_at": iso(gone.deleted_at), "seq": gone.change_seq},
        )
    return ApiError(404, "draft_not_found", "No draft with this id.")


def existing_draft(session: Session, owner: str, draft_id: str) -> Draft:
    draft = load(session, owner, draft_id)
    if draft is None:
        raise missing(session, owner, draft_id)
    return draft


def expected_version() -> int | None:
    """The version named by ``If-Match``; 428 when it is missing."""
    raw = request.headers.get("If-Match")
    if raw is None or not raw.strip():
        raise ApiError(
            428,
            "precondition_required",
            "Send the draft's etag in If-Match to change it.",
        )
    tags = request.if_match
    if tags.star_tag:
        raise ApiError(
            428, "precondition_required", "If-Match must name the draft's etag, not '*'."
        )
    for tag in tags.as_set():
        if tag and tag.startswith("v") and tag[1:].isascii() and tag[1:].isdigit():
            return int(tag[1:])
    return None


def stale(draft: Draft) -> ApiError:
    return ApiError(
        412,
        "precondition_failed",
        "The draft changed since this etag; the current draft is in details.current.",
        headers={"ETag": f'"{etag_of(draft)}"'},
        details={"current": draft_json(draft)},
    )


def latest_revision(session: Session, owner: str, draft_id: str) -> DraftRevision | None:
    return session.scalar(
        select(DraftRevision)
        .where(DraftRevision.owner == owner, DraftRevision.draft_id == draft_id)
        .order_by(DraftRevision.rev.desc())
        .limit(1)
    )


def change_draft(
    owner: str,
    draft_id: str,
    version: int | None,
    values: dict[str, Any],
    *,
    kind: str,
    restored_from: int | None = None,
) -> Draft:
    """Apply one change under the person's lock, or raise 404/410/412."""
    session = db()
    seq = lock_person(session, owner)
    draft = load(session, owner, draft_id)
    if draft is None:
        error = missing(session, owner, draft_id)
        session.rollback()
        raise error
    if version != draft.version:
        error = stale(draft)
        session.rollback()
        raise error
    now = utcnow()
    updated = session.execute(
        update(Draft)
        .where(Draft.owner == owner, Draft.id == draft_id, Draft.version == version)
        .values(**values, version=Draft.version + 1, updated_at=now, change_seq=seq)
    )
    if updated.rowcount != 1:  # type: ignore[attr-defined]
        session.rollback()
        raise stale(existing_draft(session, owner, draft_id))
    draft = existing_draft(session, owner, draft_id)
    latest = latest_revision(session, owner, draft_id)
    window = settings().autosave_window_seconds
    if (
        kind == "autosave"
        and latest is not None
        and latest.kind == "autosave"
        and (now - latest.created_at).total_seconds() <= window
    ):
        latest.title, latest.body, latest.snap_id = draft.title, draft.body, draft.snap_id
        latest.updated_at = now
        latest.saves += 1
    else:
        session.add(
            DraftRevision(
                owner=owner,
                draft_id=draft_id,
                rev=(latest.rev if latest else 0) + 1,
                kind=kind,
                restored_from=restored_from,
                title=draft.title,
                body=draft.body,
                snap_id=draft.snap_id,
                created_at=now,
                updated_at=now,
            )
        )
    session.commit()
    return draft


def same_content(draft: Draft, content: DraftContent) -> bool:
    return (draft.title, draft.body, draft.snap_id) == (
        content.title,
        content.body,
        content.snap_id,
    )


@blueprint.put("/v1/drafts/<draft_id>")
def put_draft(draft_id: str) -> ResponseReturnValue:
    owner = signed_in_user()
    draft_id = checked_id(draft_id)
    content = parsed(DraftContent, settings().max_draft_bytes)
    session = db()
    draft = load(session, owner, draft_id)
    if draft is None:
        seq = lock_person(session, owner)
        draft = load(session, owner, draft_id)
        if draft is None:
            if tombstone(session, owner, DRAFT, draft_id) is not None:
                error = missing(session, owner, draft_id)
                session.rollback()
                raise error
            now = utcnow()
            draft = Draft(
                owner=owner,
                id=draft_id,
                version=1,
                created_at=now,
                updated_at=now,
                change_seq=seq,
                **content.model_dump(),
            )
            session.add(draft)
            session.add(
                DraftRevision(
                    owner=owner,
                    draft_id=draft_id,
                    rev=1,
                    kind="save",
                    created_at=now,
                    updated_at=now,
                    **content.model_dump(),
                )
            )
            session.commit()
            return draft_response(draft, 201)
        session.rollback()
    if same_content(draft, content):
        return draft_response(draft)
    version = expected_version()
    return draft_response(change_draft(owner, draft_id, version, content.model_dump(), kind="save"))


@blueprint.get("/v1/drafts/<draft_id>")
def get_draft(draft_id: str) -> ResponseReturnValue:
    owner = signed_in_user()
    draft = existing_draft(db(), owner, checked_id(draft_id))
    if request.if_none_match and request.if_none_match.contains(etag_of(draft)):
        response = Response(status=304)
        response.set_etag(etag_of(draft))
        return response
    return draft_response(draft)


@blueprint.patch("/v1/drafts/<draft_id>")
def patch_draft(draft_id: str) -> ResponseReturnValue:
    owner = signed_in_user()
    draft_id = checked_id(draft_id)
    patch = parsed(DraftPatch, settings().max_draft_bytes)
    existing_draft(db(), owner, draft_id)
    version = expected_version()
    values = patch.model_dump(exclude_unset=True, exclude={"autosave"})
    if not values:
        raise ApiError(422, "invalid_request", "Send at least one of title, body, snap_id.")
    kind = "autosave" if patch.autosave else "save"
    return draft_response(change_draft(owner, draft_id, version, values, kind=kind))


@blueprint.delete("/v1/drafts/<draft_id>")
def delete_draft(draft_id: str) -> ResponseReturnValue:
    owner = signed_in_user()
    draft_id = checked_id(draft_id)
    session = db()
    existing_draft(session, owner, draft_id)
    version = expected_version()
    seq = lock_person(session, owner)
    draft = existing_draft(session, owner, draft_id)
    if draft.version != version:
        error = stale(draft)
        session.rollback()
        raise error
    session.execute(
        delete(DraftRevision).where(
            DraftRevision.owner == owner, DraftRevision.draft_id == draft_id
        )
    )
    session.execute(delete(Draft).where(Draft.owner == owner, Draft.id == draft_id))
    session.add(Tombstone(owner=owner, kind=DRAFT, object_id=draft_id, change_seq=seq))
    session.commit()
    return Response(status=204)


@blueprint.get("/v1/drafts/<draft_id>/revisions")
def list_revisions(draft_id: str) -> ResponseReturnValue:
    owner = signed_in_user()
    draft_id = checked_id(draft_id)
    session = db()
    existing_draft(session, owner, draft_id)
    tokens = current_app.extensions["page_tokens"]
    size = page_size(request.args.get("page_size"), settings().max_page_size)
    query = select(DraftRevision).where(
        DraftRevision.owner == owner, DraftRevision.draft_id == draft_id
    )
    raw_token = request.args.get("page_token")
    if raw_token:
        before = tokens.decode(raw_token, f"revisions:{draft_id}", owner)
        if not isinstance(before, int):
            raise ApiError(400, "invalid_page_token", "The page token is not valid for this list.")
        query = query.where(DraftRevision.rev < before)
    rows = list(session.scalars(query.order_by(DraftRevision.rev.desc()).limit(size + 1)))
    next_token = None
    if len(rows) > size:
        rows = rows[:size]
        next_token = tokens.encode(f"revisions:{draft_id}", owner, rows[-1].rev)
    total = session.scalar(
        select(func.count())
        .select_from(DraftRevision)
        .where(DraftRevision.owner == owner, DraftRevision.draft_id == draft_id)
    )
    return jsonify(
        revisions=[revision_json(row) for row in rows], next_page_token=next_token, total=total
    )


@blueprint.post("/v1/drafts/<draft_id>/revisions/<int:rev>:restore")
def restore_revision(draft_id: str, rev: int) -> ResponseReturnValue:
    owner = signed_in_user()
    draft_id = checked_id(draft_id)
    session = db()
    existing_draft(session, owner, draft_id)
    version = expected_version()
    revision = session.scalar(
        select(DraftRevision).where(
            DraftRevision.owner == owner,
            DraftRevision.draft_id == draft_id,
            DraftRevision.rev == rev,
        )
    )
    if revision is None:
        raise ApiError(404, "revision_not_found", "This draft has no such revision.")
    values = {"title": revision.title, "body": revision.body, "snap_id": revision.snap_id}
    session.rollback()
    return draft_response(
        change_draft(owner, draft_id, version, values, kind="restore", restored_from=rev)
    )
