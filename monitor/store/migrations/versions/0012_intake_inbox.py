"""Notification bodies waiting to be applied (intake answers once a body is durable here).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-01 03:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "intake_inbox",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("receiver", sa.String(length=255), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("content_type", sa.Text(), nullable=True),
        sa.Column("remote_ip", sa.Text(), nullable=True),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_intake_inbox")),
    )
    op.create_index("ix_intake_inbox_receiver", "intake_inbox", ["receiver"])
    op.create_table(
        "intake_applied",
        sa.Column("inbox", sa.String(length=255), nullable=False),
        sa.Column("last_id", sa.BigInteger(), nullable=False),
        sa.Column("applied_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("inbox", name=op.f("pk_intake_applied")),
    )


def downgrade() -> None:
    op.drop_table("intake_applied")
    op.drop_index("ix_intake_inbox_receiver", table_name="intake_inbox")
    op.drop_table("intake_inbox")
