"""Account deletion, resumable: a record first, then every step, each safe to repeat.

``begin`` writes the deletion record under the person's row lock, so from that commit
on no change of the person can commit (see :mod:`library_svc.access`) and every request
of theirs is 410 ``account_deleted``. ``finish`` then: revokes the Firebase refresh
tokens; deletes the photos in upload-svc (each one the history names, then everything
upload-svc holds for the owner); deletes the rows (history, drafts and revisions,
tombstones, entitlements, the raw webhook payloads, the person); deletes the Firebase
user; marks the record completed. A failure or a crash half way leaves the record
pending: a retry of ``DELETE /v1/me`` or the sweep runs ``finish`` again from the top.

Kept: the purchase columns of ``billing_events`` (event id, type, time, product, store,
transaction id, price, currency) with the owner removed, because tax and accounting law
requires purchase records to be kept (up to 10 years in the EU); and the completed
deletion record (the uid and two times), so a token issued before the deletion cannot
bring the account's data back.
"""

from __future__ import annotations

from datetime import timedelta

import structlog
from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from chassis.caller import Caller
from library_svc.access import deletion_of, ensure_person
from library_svc.claims import FirebaseAccounts
from library_svc.metrics import ACCOUNT_DELETIONS, ACCOUNT_DELETIONS_PENDING
from library_svc.models import (
    AccountDeletion,
    BillingEvent,
    Draft,
    DraftRevision,
    Entitlement,
    Person,
    Snap,
    Tombstone,
    utcnow,
)
from library_svc.uploads_client import UploadsClient

log = structlog.get_logger(__name__)


def publish_pending(session: Session) -> None:
    pending = session.scalar(
        select(func.count())
        .select_from(AccountDeletion)
        .where(AccountDeletion.completed_at.is_(None))
    )
    ACCOUNT_DELETIONS_PENDING.set(int(pending or 0))


def begin(session: Session, uid: str) -> AccountDeletion:
    if (existing := deletion_of(session, uid)) is not None:
        session.rollback()
        return existing
    ensure_person(session, uid)
    session.execute(
        update(Person).where(Person.uid == uid).values(change_seq=Person.change_seq + 1)
    )
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    session.execute(
        insert(AccountDeletion)
        .values(uid=uid, requested_at=utcnow(), updated_at=utcnow(), attempts=0)
        .on_conflict_do_nothing(index_elements=["uid"])
    )
    session.commit()
    publish_pending(session)
    record = deletion_of(session, uid)
    assert record is not None
    return record


def delete_rows(session: Session, uid: str) -> None:
    session.execute(delete(DraftRevision).where(DraftRevision.owner == uid))
    session.execute(delete(Draft).where(Draft.owner == uid))
    session.execute(delete(Snap).where(Snap.owner == uid))
    session.execute(delete(Tombstone).where(Tombstone.owner == uid))
    session.execute(delete(Entitlement).where(Entitlement.owner == uid))
    session.execute(
        update(BillingEvent).where(BillingEvent.owner == uid).values(owner=None, payload=None)
    )
    session.execute(delete(Person).where(Person.uid == uid))


def finish(session: Session, uploads: UploadsClient, accounts: FirebaseAccounts, uid: str) -> bool:
    """Run every step; True once the account is gone, False when a step failed."""
    record = deletion_of(session, uid)
    if record is None:
        return False
    if record.completed_at is not None:
        return True
    session.execute(
        update(AccountDeletion)
        .where(AccountDeletion.uid == uid)
        .values(attempts=AccountDeletion.attempts + 1, updated_at=utcnow())
    )
    session.commit()
    try:
        accounts.revoke_and_delete(uid, delete=False)
        caller = Caller(user=uid, tier="free")
        for upload_id in session.scalars(select(Snap.upload_id).where(Snap.owner == uid)).all():
            uploads.delete_upload(upload_id, caller)
        session.rollback()
        uploads.delete_owner_uploads(uid)
        delete_rows(session, uid)
        session.commit()
        accounts.revoke_and_delete(uid, delete=True)
        done = session.execute(
            update(AccountDeletion)
            .where(AccountDeletion.uid == uid, AccountDeletion.completed_at.is_(None))
            .values(completed_at=utcnow(), updated_at=utcnow(), last_error=None)
        )
        session.commit()
        if done.rowcount:  # type: ignore[attr-defined]
            ACCOUNT_DELETIONS.labels("completed").inc()
            log.info("account_deleted", uid=uid)
        return True
    except Exception as error:
        session.rollback()
        session.execute(
            update(AccountDeletion)
            .where(AccountDeletion.uid == uid)
            .values(last_error=f"{type(error).__name__}: {error}"[:500], updated_at=utcnow())
        )
        session.commit()
        ACCOUNT_DELETIONS.labels("failed").inc()
        log.warning("account_deletion_failed", uid=uid, error=str(error))
        return False
    finally:
        publish_pending(session)


def stalled(session: Session, grace_seconds: float) -> list[str]:
    cutoff = utcnow() - timedelta(seconds=grace_seconds)
    return list(
        session.scalars(
            select(AccountDeletion.uid).where(
                AccountDeletion.completed_at.is_(None), AccountDeletion.updated_at < cutoff
            )
        )
    )
