"""Cleanup plans stored grouped and compressed (`encoded`); `body` stays for older plans.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30 20:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("cleanup_plans") as batch:
        batch.add_column(sa.Column("encoded", sa.LargeBinary(), nullable=True))
        batch.alter_column("body", existing_type=sa.Text(), nullable=True)


def downgrade() -> None:
    # Plans stored in the new form only cannot be read by the previous revision.
    op.execute("DELETE FROM cleanup_plans WHERE body IS NULL")
    with op.batch_alter_table("cleanup_plans") as batch:
        batch.alter_column("body", existing_type=sa.Text(), nullable=False)
        batch.drop_column("encoded")
