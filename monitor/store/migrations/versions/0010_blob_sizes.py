"""Blob sizes per (repository, digest), so a manifest push never reads raw events.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-30 20:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "blob_sizes",
        sa.Column("repository", sa.String(length=255), nullable=False),
        sa.Column("digest", sa.String(length=160), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("repository", "digest", name=op.f("pk_blob_sizes")),
    )
    # What the events kept so far know, learnt once here (one scan at upgrade time).
    op.execute(
        "INSERT INTO blob_sizes (repository, digest, size) "
        "SELECT repository, digest, MAX(size) FROM events "
        "WHERE target_kind = 'blob' AND repository IS NOT NULL AND digest IS NOT NULL "
        "AND size IS NOT NULL AND length(repository) <= 255 AND length(digest) <= 160 "
        "GROUP BY repository, digest"
    )


def downgrade() -> None:
    op.drop_table("blob_sizes")
