"""SLA clocks: the subject's type joins the unique key (deal 7 and company 7 differ).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NAME = "uq_sla_clocks_subject_start"


def upgrade() -> None:
    """Widen the unique key with ``subject_type``."""
    with op.batch_alter_table("sla_clocks", schema=None) as batch_op:
        batch_op.drop_constraint(NAME, type_="unique")
        batch_op.create_unique_constraint(
            NAME, ["portal_id", "policy", "subject_type", "subject_id", "started_at"])


def downgrade() -> None:
    """Back to the key without ``subject_type``."""
    with op.batch_alter_table("sla_clocks", schema=None) as batch_op:
        batch_op.drop_constraint(NAME, type_="unique")
        batch_op.create_unique_constraint(
            NAME, ["portal_id", "policy", "subject_id", "started_at"])
