"""Rules state: task-format verdicts, SLA clocks and their history, the notification outbox.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27 04:16:33.889924
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Apply this revision."""
    op.create_table(
        "sla_clocks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("portal_id", sa.Integer(), nullable=False),
        sa.Column("policy", sa.String(length=16), nullable=False),
        sa.Column("subject_type", sa.String(length=16), nullable=False),
        sa.Column("subject_id", sa.Integer(), nullable=False),
        sa.Column("trigger", sa.String(length=32), nullable=False),
        sa.Column("responsible_id", sa.Integer(), nullable=False),
        sa.Column("requester_id", sa.Integer(), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("target_minutes", sa.Integer(), nullable=False),
        sa.Column("warn_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("stopped_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("stop_reason", sa.String(length=32), nullable=True),
        sa.Column("working_minutes", sa.Double(), nullable=True),
        sa.Column("warned_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("breached_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "state IN ('running', 'answered', 'cancelled')", name=op.f("ck_sla_clocks_state")
        ),
        sa.ForeignKeyConstraint(
            ["portal_id"],
            ["portals.id"],
            name=op.f("fk_sla_clocks_portal_id_portals"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sla_clocks")),
        sa.UniqueConstraint(
            "portal_id", "policy", "subject_id", "started_at", name="uq_sla_clocks_subject_start"
        ),
    )
    with op.batch_alter_table("sla_clocks", schema=None) as batch_op:
        batch_op.create_index(
            "ix_sla_clocks_responsible", ["portal_id", "responsible_id"], unique=False
        )
        batch_op.create_index("ix_sla_clocks_running", ["state", "due_at"], unique=False)

    op.create_table(
        "task_format_checks",
        sa.Column("portal_id", sa.Integer(), nullable=False),
        sa.Column("task_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("created_by", sa.Integer(), nullable=False),
        sa.Column("department_id", sa.Integer(), nullable=True),
        sa.Column("task_created_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("compliant_at_creation", sa.Boolean(), nullable=True),
        sa.Column("violations", sa.JSON(), nullable=False),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("commented_codes", sa.JSON(), nullable=False),
        sa.Column("comment_id", sa.Integer(), nullable=True),
        sa.Column("fixed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("returned_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("checked_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["portal_id"],
            ["portals.id"],
            name=op.f("fk_task_format_checks_portal_id_portals"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("portal_id", "task_id", name=op.f("pk_task_format_checks")),
    )
    with op.batch_alter_table("task_format_checks", schema=None) as batch_op:
        batch_op.create_index(
            "ix_task_format_checks_creator", ["portal_id", "created_by"], unique=False
        )

    op.create_table(
        "notifications",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("portal_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("tag", sa.String(length=128), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("clock_id", sa.Integer(), nullable=True),
        sa.Column("task_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("not_before", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("sent_as", sa.String(length=128), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["clock_id"],
            ["sla_clocks.id"],
            name=op.f("fk_notifications_clock_id_sla_clocks"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["portal_id"],
            ["portals.id"],
            name=op.f("fk_notifications_portal_id_portals"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notifications")),
        sa.UniqueConstraint("portal_id", "user_id", "tag", name="uq_notifications_user_tag"),
    )
    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.create_index("ix_notifications_pending", ["sent_at", "not_before"], unique=False)

    op.create_table(
        "sla_clock_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("clock_id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["clock_id"],
            ["sla_clocks.id"],
            name=op.f("fk_sla_clock_events_clock_id_sla_clocks"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sla_clock_events")),
    )
    with op.batch_alter_table("sla_clock_events", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_sla_clock_events_clock_id"), ["clock_id"], unique=False
        )

    # New NOT NULL columns get a default for existing rows, then lose it (the app sets values).
    with op.batch_alter_table("mirror_activities", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("raw", sa.JSON(), server_default=sa.text("'{}'"), nullable=False)
        )
    with op.batch_alter_table("mirror_activities", schema=None) as batch_op:
        batch_op.alter_column("raw", server_default=None)

    with op.batch_alter_table("mirror_tasks", schema=None) as batch_op:
        batch_op.add_column(sa.Column("description", sa.Text(), server_default="", nullable=False))
    with op.batch_alter_table("mirror_tasks", schema=None) as batch_op:
        batch_op.alter_column("description", server_default=None)


def downgrade() -> None:
    """Revert this revision."""
    with op.batch_alter_table("mirror_tasks", schema=None) as batch_op:
        batch_op.drop_column("description")

    with op.batch_alter_table("mirror_activities", schema=None) as batch_op:
        batch_op.drop_column("raw")

    with op.batch_alter_table("sla_clock_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_sla_clock_events_clock_id"))

    op.drop_table("sla_clock_events")
    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.drop_index("ix_notifications_pending")

    op.drop_table("notifications")
    with op.batch_alter_table("task_format_checks", schema=None) as batch_op:
        batch_op.drop_index("ix_task_format_checks_creator")

    op.drop_table("task_format_checks")
    with op.batch_alter_table("sla_clocks", schema=None) as batch_op:
        batch_op.drop_index("ix_sla_clocks_running")
        batch_op.drop_index("ix_sla_clocks_responsible")

    op.drop_table("sla_clocks")
