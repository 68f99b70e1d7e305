"""KPI state: deal stage history, the NPS ledger and survey links, KPI values, write-back snapshot.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27 04:20:18.707088
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Apply this revision."""
    op.create_table(
        "kpi_items",
        sa.Column("portal_id", sa.Integer(), nullable=False),
        sa.Column("rep_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("period", sa.String(length=16), nullable=False),
        sa.Column("entity_type_id", sa.Integer(), nullable=False),
        sa.Column("item_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["portal_id"],
            ["portals.id"],
            name=op.f("fk_kpi_items_portal_id_portals"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("portal_id", "rep_id", "period", name=op.f("pk_kpi_items")),
    )
    op.create_table(
        "kpi_values",
        sa.Column("portal_id", sa.Integer(), nullable=False),
        sa.Column("period", sa.String(length=16), nullable=False),
        sa.Column("rep_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("kpi", sa.String(length=48), nullable=False),
        sa.Column("value", sa.Numeric(precision=20, scale=4), nullable=True),
        sa.Column("target", sa.Numeric(precision=20, scale=4), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("period_start", sa.Date(), nullable=False),
        sa.Column("computed_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["portal_id"],
            ["portals.id"],
            name=op.f("fk_kpi_values_portal_id_portals"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("portal_id", "period", "rep_id", "kpi", name=op.f("pk_kpi_values")),
    )
    op.create_table(
        "mirror_stage_history",
        sa.Column("owner_id", sa.Integer(), nullable=False),
        sa.Column("type_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("category_id", sa.Integer(), nullable=False),
        sa.Column("semantic", sa.String(length=1), nullable=False),
        sa.Column("stage_id", sa.String(length=64), nullable=False),
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("synced_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("portal_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["portal_id"],
            ["portals.id"],
            name=op.f("fk_mirror_stage_history_portal_id_portals"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", "portal_id", name=op.f("pk_mirror_stage_history")),
    )
    with op.batch_alter_table("mirror_stage_history", schema=None) as batch_op:
        batch_op.create_index(
            "ix_mirror_stage_history_owner", ["portal_id", "owner_id"], unique=False
        )

    op.create_table(
        "nps_answers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("portal_id", sa.Integer(), nullable=False),
        sa.Column("contact_id", sa.Integer(), nullable=False),
        sa.Column("company_id", sa.Integer(), nullable=True),
        sa.Column("score", sa.Integer(), nullable=False),
        sa.Column("comment", sa.Text(), nullable=False),
        sa.Column("wave", sa.String(length=16), nullable=False),
        sa.Column("answered_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["portal_id"],
            ["portals.id"],
            name=op.f("fk_nps_answers_portal_id_portals"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_nps_answers")),
        sa.UniqueConstraint("portal_id", "contact_id", "wave", name="uq_nps_answers_contact_wave"),
    )
    with op.batch_alter_table("nps_answers", schema=None) as batch_op:
        batch_op.create_index("ix_nps_answers_company", ["portal_id", "company_id"], unique=False)

    op.create_table(
        "survey_invitations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("portal_id", sa.Integer(), nullable=False),
        sa.Column("contact_id", sa.Integer(), nullable=False),
        sa.Column("wave", sa.String(length=16), nullable=False),
        sa.Column("nonce", sa.String(length=64), nullable=False),
        sa.Column("rep_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["portal_id"],
            ["portals.id"],
            name=op.f("fk_survey_invitations_portal_id_portals"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_survey_invitations")),
        sa.UniqueConstraint("nonce", name=op.f("uq_survey_invitations_nonce")),
        sa.UniqueConstraint("portal_id", "contact_id", "wave", name="uq_survey_invitations_wave"),
    )
    op.create_table(
        "written_values",
        sa.Column("portal_id", sa.Integer(), nullable=False),
        sa.Column("target", sa.String(length=32), nullable=False),
        sa.Column("target_id", sa.String(length=64), nullable=False),
        sa.Column("field", sa.String(length=64), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("written_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["portal_id"],
            ["portals.id"],
            name=op.f("fk_written_values_portal_id_portals"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "portal_id", "target", "target_id", "field", name=op.f("pk_written_values")
        ),
    )


def downgrade() -> None:
    """Revert this revision."""
    op.drop_table("written_values")
    op.drop_table("survey_invitations")
    with op.batch_alter_table("nps_answers", schema=None) as batch_op:
        batch_op.drop_index("ix_nps_answers_company")

    op.drop_table("nps_answers")
    with op.batch_alter_table("mirror_stage_history", schema=None) as batch_op:
        batch_op.drop_index("ix_mirror_stage_history_owner")

    op.drop_table("mirror_stage_history")
    op.drop_table("kpi_values")
    op.drop_table("kpi_items")
