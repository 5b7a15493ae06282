"""Daily roll-ups of events, kept after raw events expire.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27 07:05:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "event_rollups",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("repository", sa.String(length=255), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("client", sa.String(length=16), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(
            "day", "repository", "action", "client", name=op.f("pk_event_rollups")
        ),
    )


def downgrade() -> None:
    op.drop_table("event_rollups")
