"""The events' index by `received_at` dropped.

No query reads events by when they were received: detection walks them by id and reads
`received_at` from the rows it fetches, retention and every read go by `occurred_at`. The
index still cost every stored event an entry written (one of the ten the `events` table
writes, each in the write-ahead log that the next notification's commit flushes on
PostgreSQL) and 214 MB on a PostgreSQL store of 10M events. Dropping it there took 0.7 s,
and 3.2 s on SQLite, whose file keeps its size (later writes reuse the freed pages).

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-04 18:45:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index("ix_events_received_at", table_name="events")


def downgrade() -> None:
    op.create_index("ix_events_received_at", "events", ["received_at"])
