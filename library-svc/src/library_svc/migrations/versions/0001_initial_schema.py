"""Initial schema (expand only): people and their change sequence, history, drafts and
revisions, tombstones, entitlements, billing events, account deletions.

Revision ID: 0001
Revises: (none)
Create Date: 2026-12-02 15:40:13.230737
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "account_deletions",
        sa.Column("uid", sa.String(length=128), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("uid", name=op.f("pk_account_deletions")),
    )
    with op.batch_alter_table("account_deletions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_account_deletions_completed_at"), ["completed_at"], unique=False
        )

    op.create_table(
        "billing_events",
        sa.Column("id", sa.String(length=128), nullable=False),
        sa.Column("owner", sa.String(length=128), nullable=True),
        sa.Column("type", sa.String(length=40), nullable=False),
        sa.Column("event_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("product_id", sa.String(length=128), nullable=True),
        sa.Column("store", sa.String(length=32), nullable=True),
        sa.Column("transaction_id", sa.String(length=128), nullable=True),
        sa.Column("price", sa.Float(), nullable=True),
        sa.Column("currency", sa.String(length=8), nullable=True),
        sa.Column(
            "payload", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=True
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_billing_events")),
    )
    with op.batch_alter_table("billing_events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_billing_events_owner"), ["owner"], unique=False)

    op.create_table(
        "people",
        sa.Column("uid", sa.String(length=128), nullable=False),
        sa.Column("change_seq", sa.BigInteger(), nullable=False),
        sa.Column("pruned_seq", sa.BigInteger(), nullable=False),
        sa.Column("claimed_tier", sa.String(length=16), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("uid", name=op.f("pk_people")),
    )
    op.create_table(
        "drafts",
        sa.Column("owner", sa.String(length=128), nullable=False),
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("snap_id", sa.String(length=32), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("change_seq", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["owner"], ["people.uid"], name=op.f("fk_drafts_owner_people"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("owner", "id", name=op.f("pk_drafts")),
    )
    with op.batch_alter_table("drafts", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_drafts_owner_change_seq"), ["owner", "change_seq"], unique=False
        )

    op.create_table(
        "entitlements",
        sa.Column("owner", sa.String(length=128), nullable=False),
        sa.Column("entitlement_id", sa.String(length=64), nullable=False),
        sa.Column("product_id", sa.String(length=128), nullable=True),
        sa.Column("store", sa.String(length=32), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("will_renew", sa.Boolean(), nullable=False),
        sa.Column("billing_issue", sa.Boolean(), nullable=False),
        sa.Column("last_event_type", sa.String(length=32), nullable=False),
        sa.Column("last_event_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["owner"], ["people.uid"], name=op.f("fk_entitlements_owner_people"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("owner", "entitlement_id", name=op.f("pk_entitlements")),
    )
    op.create_table(
        "snaps",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("owner", sa.String(length=128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("change_seq", sa.BigInteger(), nullable=False),
        sa.Column("upload_id", sa.String(length=64), nullable=False),
        sa.Column("upload_size", sa.BigInteger(), nullable=False),
        sa.Column("content_type", sa.String(length=64), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column(
            "preset", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False
        ),
        sa.Column(
            "ideas", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False
        ),
        sa.Column("provider", sa.String(length=64), nullable=False),
        sa.Column("model", sa.String(length=128), nullable=True),
        sa.Column("usage", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=True),
        sa.ForeignKeyConstraint(
            ["owner"], ["people.uid"], name=op.f("fk_snaps_owner_people"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_snaps")),
        sa.UniqueConstraint("owner", "upload_id", name=op.f("uq_snaps_owner_upload_id")),
    )
    with op.batch_alter_table("snaps", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_snaps_owner_change_seq"), ["owner", "change_seq"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_snaps_owner_created_at_id"), ["owner", "created_at", "id"], unique=False
        )

    op.create_table(
        "tombstones",
        sa.Column("owner", sa.String(length=128), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("object_id", sa.String(length=64), nullable=False),
        sa.Column("change_seq", sa.BigInteger(), nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["owner"], ["people.uid"], name=op.f("fk_tombstones_owner_people"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("owner", "kind", "object_id", name=op.f("pk_tombstones")),
    )
    with op.batch_alter_table("tombstones", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_tombstones_deleted_at"), ["deleted_at"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_tombstones_owner_change_seq"), ["owner", "change_seq"], unique=False
        )

    op.create_table(
        "draft_revisions",
        sa.Column("owner", sa.String(length=128), nullable=False),
        sa.Column("draft_id", sa.String(length=36), nullable=False),
        sa.Column("rev", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("restored_from", sa.Integer(), nullable=True),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("snap_id", sa.String(length=32), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("saves", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["owner", "draft_id"],
            ["drafts.owner", "drafts.id"],
            name=op.f("fk_draft_revisions_owner_drafts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("owner", "draft_id", "rev", name=op.f("pk_draft_revisions")),
    )


def downgrade() -> None:
    op.drop_table("draft_revisions")
    with op.batch_alter_table("tombstones", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_tombstones_owner_change_seq"))
        batch_op.drop_index(batch_op.f("ix_tombstones_deleted_at"))

    op.drop_table("tombstones")
    with op.batch_alter_table("snaps", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_snaps_owner_created_at_id"))
        batch_op.drop_index(batch_op.f("ix_snaps_owner_change_seq"))

    op.drop_table("snaps")
    op.drop_table("entitlements")
    with op.batch_alter_table("drafts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_drafts_owner_change_seq"))

    op.drop_table("drafts")
    op.drop_table("people")
    with op.batch_alter_table("billing_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_billing_events_owner"))

    op.drop_table("billing_events")
    with op.batch_alter_table("account_deletions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_account_deletions_completed_at"))

    op.drop_table("account_deletions")
