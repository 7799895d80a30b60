"""What a person uses: snaps kept, photo bytes stored, snaps today."""

from __future__ import annotations

from datetime import datetime, time

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from library_svc.models import Snap, utcnow
from library_svc.uploads_client import UploadsClient


def history_count(session: Session, uid: str) -> int:
    return int(session.scalar(select(func.count()).where(Snap.owner == uid)) or 0)


def history_bytes(session: Session, uid: str) -> int:
    return int(session.scalar(select(func.sum(Snap.upload_size)).where(Snap.owner == uid)) or 0)


def storage_used(session: Session, uploads: UploadsClient, uid: str) -> int:
    """upload-svc's per-owner total; the history's photo sizes where it has no such route."""
    listing = uploads.owner_uploads(uid)
    if listing is None:
        return history_bytes(session, uid)
    return listing.total_bytes


def snaps_today(session: Session, uid: str) -> tuple[str, int]:
    now = utcnow()
    midnight = datetime.combine(now.date(), time.min, tzinfo=now.tzinfo)
    count = session.scalar(
        select(func.count()).where(Snap.owner == uid, Snap.created_at >= midnight)
    )
    return now.date().isoformat(), int(count or 0)
