"""Roll-ups and the newest event per source kept as events are inserted; indexes behind the
cleanup gauges.

Until now the roll-ups held only expired days and the API added the raw events of the other
days at every request. From this revision on every inserted event is counted at once, so the
upgrade counts the events still stored into the roll-ups (once) and records the newest event
per source.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30 19:50:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


COUNT_STORED = (
    "INSERT INTO event_rollups (day, repository, action, client, count) "
    "SELECT DAY, coalesce(repository, ''), action, client, count(*) FROM events WHERE TRUE "
    "GROUP BY DAY, coalesce(repository, ''), action, client "
    "ON CONFLICT (day, repository, action, client) "
    "DO UPDATE SET count = event_rollups.count + excluded.count"
)
UNCOUNT_STORED = (
    "UPDATE event_rollups SET count = event_rollups.count - stored.count FROM ("
    "SELECT DAY AS day, coalesce(repository, '') AS repository, action, client, "
    "count(*) AS count FROM events GROUP BY DAY, coalesce(repository, ''), action, client"
    ") AS stored WHERE event_rollups.day = stored.day "
    "AND event_rollups.repository = stored.repository "
    "AND event_rollups.action = stored.action AND event_rollups.client = stored.client"
)


def _with_utc_day(sql: str) -> str:
    """The statement with DAY replaced by the dialect's UTC day of `occurred_at`."""
    postgres = op.get_bind().dialect.name == "postgresql"
    return sql.replace(
        "DAY", "(occurred_at AT TIME ZONE 'UTC')::date" if postgres else "date(occurred_at)"
    )


def upgrade() -> None:
    op.create_table(
        "event_sources",
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("newest_occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("source", name=op.f("pk_event_sources")),
    )
    op.create_index(op.f("ix_registry_tags_seen_at"), "registry_tags", ["seen_at"], unique=False)
    op.create_index(
        "ix_cleanup_journal_outcome_at", "cleanup_journal", ["outcome", "at"], unique=False
    )
    op.execute(_with_utc_day(COUNT_STORED))
    op.execute(
        "INSERT INTO event_sources (source, newest_occurred_at) "
        "SELECT source, max(occurred_at) FROM events GROUP BY source"
    )


def downgrade() -> None:
    # The roll-ups keep the counts of stored events; the previous revision would count those
    # events a second time, so they are taken out again.
    op.execute(_with_utc_day(UNCOUNT_STORED))
    op.execute("DELETE FROM event_rollups WHERE count <= 0")
    op.drop_index("ix_cleanup_journal_outcome_at", table_name="cleanup_journal")
    op.drop_index(op.f("ix_registry_tags_seen_at"), table_name="registry_tags")
    op.drop_table("event_sources")
