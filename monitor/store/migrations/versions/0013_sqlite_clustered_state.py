"""SQLite: per-tag state, pulls and manifests stored in their primary key's order.

`tag_state`, `tag_pulls` and `manifest_info` become WITHOUT ROWID tables on SQLite: their rows
live in the primary key's b-tree, so a read in (repository, ...) order, which cleanup planning
makes of every row, walks one b-tree instead of the key's index and a lookup in the table for
each row, and a new row goes into one b-tree instead of two. PostgreSQL is unchanged.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-02 01:20:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("tag_state", "tag_pulls", "manifest_info")


def upgrade() -> None:
    _rebuild(with_rowid=False)


def downgrade() -> None:
    _rebuild(with_rowid=True)


def _rebuild(*, with_rowid: bool) -> None:
    """Copies each table into a new one with (or without) a rowid, on SQLite only."""
    if op.get_bind().dialect.name != "sqlite":
        return
    for table in TABLES:
        with op.batch_alter_table(
            table, recreate="always", table_kwargs={"sqlite_with_rowid": with_rowid}
        ):
            pass
