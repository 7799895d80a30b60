"""Who may do what: a signed-in caller, an account not being deleted, one change at a time.

Every change a person makes starts with :func:`lock_person`: it makes sure the person's
row exists, bumps their change sequence (which row-locks it until commit) and only then
checks for a deletion record. An account deletion writes its record while holding the
same row lock, so once a deletion has begun no change of that person can commit.
"""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from chassis.caller import current_caller
from chassis.errors import ApiError
from library_svc.models import AccountDeletion, Person


def signed_in_user() -> str:
    caller = current_caller()
    if caller.user is None:
        raise ApiError(401, "sign_in_required", "Sign in to use your library.")
    return caller.user


def account_deleted() -> ApiError:
    return ApiError(
        410, "account_deleted", "This account is deleted or being deleted; nothing is kept."
    )


def deletion_of(session: Session, uid: str) -> AccountDeletion | None:
    return session.scalar(select(AccountDeletion).where(AccountDeletion.uid == uid))


def refuse_if_deleted(session: Session, uid: str) -> None:
    if deletion_of(session, uid) is not None:
        raise account_deleted()


def ensure_person(session: Session, uid: str) -> None:
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    session.execute(
        insert(Person)
        .values(uid=uid, change_seq=0, pruned_seq=0)
        .on_conflict_do_nothing(index_elements=["uid"])
    )


def lock_person(session: Session, uid: str) -> int:
    """Start a change for ``uid``: its next change sequence number, the row locked."""
    ensure_person(session, uid)
    seq = session.execute(
        update(Person)
        .where(Person.uid == uid)
        .values(change_seq=Person.change_seq + 1)
        .returning(Person.change_seq)
    ).scalar_one()
    if deletion_of(session, uid) is not None:
        session.rollback()
        raise account_deleted()
    return int(seq)
