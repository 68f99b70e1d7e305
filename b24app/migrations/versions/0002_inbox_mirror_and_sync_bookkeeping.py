"""Inbox, mirror and sync bookkeeping tables.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27 03:55:28.332807
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Apply this revision."""
    op.create_table(
        "inbox_events",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("portal_id", sa.Integer(), nullable=False),
        sa.Column("event", sa.String(length=64), nullable=False),
        sa.Column("entity_id", sa.String(length=64), nullable=False),
        sa.Column("ts", sa.BigInteger(), nullable=False),
        sa.Column("dedup_key", sa.String(length=200), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("by_user", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("locked_by", sa.String(length=64), nullable=True),
        sa.Column("locked_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("outcome", sa.String(length=64), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "source IN ('online', 'offline', 'cursor')", name=op.f("ck_inbox_events_source")
        ),
        sa.CheckConstraint(
            "status IN ('pending', 'processing', 'done', 'dead', 'ignored')",
            name=op.f("ck_inbox_events_status"),
        ),
        sa.ForeignKeyConstraint(
            ["portal_id"],
            ["portals.id"],
            name=op.f("fk_inbox_events_portal_id_portals"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_inbox_events")),
        sa.UniqueConstraint("portal_id", "dedup_key", name="uq_inbox_events_portal_dedup"),
    )
    with op.batch_alter_table("inbox_events", schema=None) as batch_op:
        batch_op.create_index("ix_inbox_events_claim", ["status", "next_attempt_at"], unique=False)

    op.create_table(
        "mirror_activities",
        sa.Column("type_id", sa.Integer(), nullable=False),
        sa.Column("provider_id", sa.String(length=64), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("direction", sa.Integer(), nullable=False),
        sa.Column("completed", sa.Boolean(), nullable=False),
        sa.Column("owner_type_id", sa.Integer(), nullable=False),
        sa.Column("owner_id", sa.Integer(), nullable=False),
        sa.Column("responsible_id", sa.Integer(), nullable=False),
        sa.Column("author_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("start_time", sa.DateTime(timezone=True), nullable=True),
        sa.Column("end_time", sa.DateTime(timezone=True), nullable=True),
        sa.Column("deadline", sa.DateTime(timezone=True), nullable=True),
        sa.Column("bindings", sa.JSON(), nullable=False),
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("synced_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("portal_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["portal_id"],
            ["portals.id"],
            name=op.f("fk_mirror_activities_portal_id_portals"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", "portal_id", name=op.f("pk_mirror_activities")),
    )
    with op.batch_alter_table("mirror_activities", schema=None) as batch_op:
        batch_op.create_index(
            "ix_mirror_activities_owner", ["portal_id", "owner_type_id", "owner_id"], unique=False
        )
        batch_op.create_index(
            "ix_mirror_activities_responsible",
            ["portal_id", "responsible_id", "type_id"],
            unique=False,
        )

    op.create_table(
        "mirror_companies",
        sa.Column("title", sa.String(length=512), nullable=False),
        sa.Column("assigned_by_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("modified_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("raw", sa.JSON(), nullable=False),
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("synced_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("portal_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["portal_id"],
            ["portals.id"],
            name=op.f("fk_mirror_companies_portal_id_portals"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", "portal_id", name=op.f("pk_mirror_companies")),
    )
    with op.batch_alter_table("mirror_companies", schema=None) as batch_op:
        batch_op.create_index(
            "ix_mirror_companies_assigned", ["portal_id", "assigned_by_id"], unique=False
        )

    op.create_table(
        "mirror_contacts",
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("last_name", sa.String(length=255), nullable=False),
        sa.Column("company_id", sa.Integer(), nullable=True),
        sa.Column("assigned_by_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("modified_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("raw", sa.JSON(), nullable=False),
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("synced_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("portal_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["portal_id"],
            ["portals.id"],
            name=op.f("fk_mirror_contacts_portal_id_portals"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", "portal_id", name=op.f("pk_mirror_contacts")),
    )
    op.create_table(
        "mirror_deals",
        sa.Column("title", sa.String(length=512), nullable=False),
        sa.Column("stage_id", sa.String(length=64), nullable=False),
        sa.Column("semantic", sa.String(length=1), nullable=False),
        sa.Column("category_id", sa.Integer(), nullable=False),
        sa.Column("amount", sa.Numeric(precision=18, scale=2), nullable=False),
        sa.Column("currency", sa.String(length=8), nullable=False),
        sa.Column("company_id", sa.Integer(), nullable=True),
        sa.Column("contact_id", sa.Integer(), nullable=True),
        sa.Column("assigned_by_id", sa.Integer(), nullable=False),
        sa.Column("created_by_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("modified_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("moved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("begin_date", sa.Date(), nullable=True),
        sa.Column("close_date", sa.Date(), nullable=True),
        sa.Column("closed", sa.Boolean(), nullable=False),
        sa.Column("last_activity_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("raw", sa.JSON(), nullable=False),
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("synced_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("portal_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["portal_id"],
            ["portals.id"],
            name=op.f("fk_mirror_deals_portal_id_portals"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", "portal_id", name=op.f("pk_mirror_deals")),
    )
    with op.batch_alter_table("mirror_deals", schema=None) as batch_op:
        batch_op.create_index(
            "ix_mirror_deals_assigned", ["portal_id", "assigned_by_id"], unique=False
        )
        batch_op.create_index("ix_mirror_deals_company", ["portal_id", "company_id"], unique=False)
        batch_op.create_index(
            "ix_mirror_deals_purchases", ["portal_id", "semantic", "close_date"], unique=False
        )

    op.create_table(
        "mirror_departments",
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("parent_id", sa.Integer(), nullable=True),
        sa.Column("head_id", sa.Integer(), nullable=True),
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("synced_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("portal_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["portal_id"],
            ["portals.id"],
            name=op.f("fk_mirror_departments_portal_id_portals"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", "portal_id", name=op.f("pk_mirror_departments")),
    )
    op.create_table(
        "mirror_groups",
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("synced_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("portal_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["portal_id"],
            ["portals.id"],
            name=op.f("fk_mirror_groups_portal_id_portals"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", "portal_id", name=op.f("pk_mirror_groups")),
    )
    op.create_table(
        "mirror_tasks",
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("created_by", sa.Integer(), nullable=False),
        sa.Column("responsible_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("deadline", sa.DateTime(timezone=True), nullable=True),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("status_changed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("group_id", sa.Integer(), nullable=False),
        sa.Column("chat_id", sa.Integer(), nullable=True),
        sa.Column("accomplices", sa.JSON(), nullable=False),
        sa.Column("auditors", sa.JSON(), nullable=False),
        sa.Column("crm", sa.JSON(), nullable=False),
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("synced_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("portal_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["portal_id"],
            ["portals.id"],
            name=op.f("fk_mirror_tasks_portal_id_portals"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", "portal_id", name=op.f("pk_mirror_tasks")),
    )
    with op.batch_alter_table("mirror_tasks", schema=None) as batch_op:
        batch_op.create_index("ix_mirror_tasks_creator", ["portal_id", "created_by"], unique=False)
        batch_op.create_index(
            "ix_mirror_tasks_responsible", ["portal_id", "responsible_id"], unique=False
        )

    op.create_table(
        "mirror_users",
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("last_name", sa.String(length=255), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("departments", sa.JSON(), nullable=False),
        sa.Column("email", sa.String(length=255), nullable=False),
        sa.Column("position", sa.String(length=255), nullable=False),
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("synced_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("portal_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["portal_id"],
            ["portals.id"],
            name=op.f("fk_mirror_users_portal_id_portals"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", "portal_id", name=op.f("pk_mirror_users")),
    )
    op.create_table(
        "offline_batches",
        sa.Column("portal_id", sa.Integer(), nullable=False),
        sa.Column("process_id", sa.String(length=64), nullable=False),
        sa.Column("reserved_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("events", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["portal_id"],
            ["portals.id"],
            name=op.f("fk_offline_batches_portal_id_portals"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("portal_id", "process_id", name=op.f("pk_offline_batches")),
    )
    op.create_table(
        "own_writes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("portal_id", sa.Integer(), nullable=False),
        sa.Column("entity", sa.String(length=32), nullable=False),
        sa.Column("entity_id", sa.String(length=64), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["portal_id"],
            ["portals.id"],
            name=op.f("fk_own_writes_portal_id_portals"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_own_writes")),
    )
    with op.batch_alter_table("own_writes", schema=None) as batch_op:
        batch_op.create_index(
            "ix_own_writes_lookup", ["portal_id", "entity", "entity_id"], unique=False
        )

    op.create_table(
        "sync_cursors",
        sa.Column("portal_id", sa.Integer(), nullable=False),
        sa.Column("entity", sa.String(length=32), nullable=False),
        sa.Column("modified_since", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_id", sa.Integer(), nullable=False),
        sa.Column("full_done", sa.Boolean(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["portal_id"],
            ["portals.id"],
            name=op.f("fk_sync_cursors_portal_id_portals"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("portal_id", "entity", name=op.f("pk_sync_cursors")),
    )


def downgrade() -> None:
    """Revert this revision."""
    op.drop_table("sync_cursors")
    with op.batch_alter_table("own_writes", schema=None) as batch_op:
        batch_op.drop_index("ix_own_writes_lookup")

    op.drop_table("own_writes")
    op.drop_table("offline_batches")
    op.drop_table("mirror_users")
    with op.batch_alter_table("mirror_tasks", schema=None) as batch_op:
        batch_op.drop_index("ix_mirror_tasks_responsible")
        batch_op.drop_index("ix_mirror_tasks_creator")

    op.drop_table("mirror_tasks")
    op.drop_table("mirror_groups")
    op.drop_table("mirror_departments")
    with op.batch_alter_table("mirror_deals", schema=None) as batch_op:
        batch_op.drop_index("ix_mirror_deals_purchases")
        batch_op.drop_index("ix_mirror_deals_company")
        batch_op.drop_index("ix_mirror_deals_assigned")

    op.drop_table("mirror_deals")
    op.drop_table("mirror_contacts")
    with op.batch_alter_table("mirror_companies", schema=None) as batch_op:
        batch_op.drop_index("ix_mirror_companies_assigned")

    op.drop_table("mirror_companies")
    with op.batch_alter_table("mirror_activities", schema=None) as batch_op:
        batch_op.drop_index("ix_mirror_activities_responsible")
        batch_op.drop_index("ix_mirror_activities_owner")

    op.drop_table("mirror_activities")
    with op.batch_alter_table("inbox_events", schema=None) as batch_op:
        batch_op.drop_index("ix_inbox_events_claim")

    op.drop_table("inbox_events")
