"""The tables, one declarative model each, shared by PostgreSQL and SQLite.

Constraint names come from one naming convention, so Alembic can alter them by name on
both databases (SQLite's batch mode recreates a table and needs the names). Every time
is stored in UTC and read back aware, whichever database holds it.

``people.change_seq`` is the person's change sequence: each change bumps it in the
same transaction (which also locks the row), so a person's changes commit in sequence
order and the change feed never skips one that commits late.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """An aware UTC datetime on both databases (SQLite drops the zone on its own)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


JSONType = JSON().with_variant(JSONB(), "postgresql")


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime, dict[str, Any]: JSONType}


class Person(Base):
    __tablename__ = "people"

    uid: Mapped[str] = mapped_column(String(128), primary_key=True)
    change_seq: Mapped[int] = mapped_column(BigInteger, default=0)
    pruned_seq: Mapped[int] = mapped_column(BigInteger, default=0)
    claimed_tier: Mapped[str | None] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class AccountDeletion(Base):
    __tablename__ = "account_deletions"

    uid: Mapped[str] = mapped_column(String(128), primary_key=True)
    requested_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    completed_at: Mapped[datetime | None] = mapped_column(index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)


class Snap(Base):
    __tablename__ = "snaps"
    __table_args__ = (
        UniqueConstraint("owner", "upload_id"),
        Index(None, "owner", "created_at", "id"),
        Index(None, "owner", "change_seq"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    owner: Mapped[str] = mapped_column(ForeignKey("people.uid", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    change_seq: Mapped[int] = mapped_column(BigInteger)
    upload_id: Mapped[str] = mapped_column(String(64))
    upload_size: Mapped[int] = mapped_column(BigInteger)
    content_type: Mapped[str] = mapped_column(String(64))
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    preset: Mapped[dict[str, Any]] = mapped_column()
    ideas: Mapped[Any] = mapped_column(JSONType)
    provider: Mapped[str] = mapped_column(String(64))
    model: Mapped[str | None] = mapped_column(String(128))
    usage: Mapped[dict[str, Any] | None] = mapped_column()


class Draft(Base):
    __tablename__ = "drafts"
    __table_args__ = (Index(None, "owner", "change_seq"),)

    owner: Mapped[str] = mapped_column(
        ForeignKey("people.uid", ondelete="CASCADE"), primary_key=True
    )
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    version: Mapped[int] = mapped_column(Integer)
    title: Mapped[str] = mapped_column(Text, default="")
    body: Mapped[str] = mapped_column(Text, default="")
    snap_id: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    change_seq: Mapped[int] = mapped_column(BigInteger)


class DraftRevision(Base):
    __tablename__ = "draft_revisions"
    __table_args__ = (
        ForeignKeyConstraint(
            ["owner", "draft_id"], ["drafts.owner", "drafts.id"], ondelete="CASCADE"
        ),
    )

    owner: Mapped[str] = mapped_column(String(128), primary_key=True)
    draft_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    rev: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    restored_from: Mapped[int | None] = mapped_column(Integer)
    title: Mapped[str] = mapped_column(Text)
    body: Mapped[str] = mapped_column(Text)
    snap_id: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    saves: Mapped[int] = mapped_column(Integer, default=1)


class Tombstone(Base):
    __tablename__ = "tombstones"
    __table_args__ = (Index(None, "owner", "change_seq"),)

    owner: Mapped[str] = mapped_column(
        ForeignKey("people.uid", ondelete="CASCADE"), primary_key=True
    )
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    object_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    change_seq: Mapped[int] = mapped_column(BigInteger)
    deleted_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class Entitlement(Base):
    __tablename__ = "entitlements"

    owner: Mapped[str] = mapped_column(
        ForeignKey("people.uid", ondelete="CASCADE"), primary_key=True
    )
    entitlement_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    product_id: Mapped[str | None] = mapped_column(String(128))
    store: Mapped[str | None] = mapped_column(String(32))
    expires_at: Mapped[datetime | None] = mapped_column()
    will_renew: Mapped[bool] = mapped_column(Boolean, default=True)
    billing_issue: Mapped[bool] = mapped_column(Boolean, default=False)
    last_event_type: Mapped[str] = mapped_column(String(32))
    last_event_at_ms: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class BillingEvent(Base):
    """Every webhook event by id (deduplication); the purchase columns outlive the account."""

    __tablename__ = "billing_events"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    owner: Mapped[str | None] = mapped_column(String(128), index=True)
    type: Mapped[str] = mapped_column(String(40))
    event_at_ms: Mapped[int] = mapped_column(BigInteger)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    product_id: Mapped[str | None] = mapped_column(String(128))
    store: Mapped[str | None] = mapped_column(String(32))
    transaction_id: Mapped[str | None] = mapped_column(String(128))
    price: Mapped[float | None] = mapped_column(Float)
    currency: Mapped[str | None] = mapped_column(String(8))
    payload: Mapped[dict[str, Any] | None] = mapped_column()
