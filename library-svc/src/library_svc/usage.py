"""What a person uses: snaps kept, photo bytes stored, snaps today."""

from __future__ import annotations

from datetime import datetime, time

import structlog
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from chassis.errors import ApiError
from library_svc.models import Snap, utcnow
from library_svc.uploads_client import UploadsClient

log = structlog.get_logger(__name__)


def history_count(session: Session, uid: str) -> int:
    return int(session.scalar(select(func.count()).where(Snap.owner == uid)) or 0)


def history_bytes(session: Session, uid: str) -> int:
    return int(session.scalar(select(func.sum(Snap.upload_size)).where(Snap.owner == uid)) or 0)


def storage_counted(session: Session, uploads: UploadsClient, uid: str) -> tuple[int, str]:
    """Photo bytes stored and who counted them: ``upload-svc`` (its per-owner total) or
    ``history`` (the history's photo sizes, where upload-svc has no per-owner route or
    cannot answer now, so a slow upload-svc never takes the account page down)."""
    try:
        listing = uploads.owner_uploads(uid)
    except ApiError as error:
        log.warning("storage_count_from_history", error=error.code)
        listing = None
    if listing is None:
        return history_bytes(session, uid), "history"
    return listing.total_bytes, "upload-svc"


def storage_used(session: Session, uploads: UploadsClient, uid: str) -> int:
    return storage_counted(session, uploads, uid)[0]


def snaps_today(session: Session, uid: str) -> tuple[str, int]:
    now = utcnow()
    midnight = datetime.combine(now.date(), time.min, tzinfo=now.tzinfo)
    count = session.scalar(
        select(func.count()).where(Snap.owner == uid, Snap.created_at >= midnight)
    )
    return now.date().isoformat(), int(count or 0)
