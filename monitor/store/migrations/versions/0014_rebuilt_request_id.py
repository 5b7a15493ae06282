"""A partial index of rebuilt events by request id.

Intake asks, for every batch of notifications, whether an event rebuilt from the registry's log
shares a request id with one of them (`merge_late_notifications`). Through the index of every
event by request id, that lookup reads each event with that request id; a sender repeating one
request id in many notifications made each batch cost more than the last. This index holds the
rebuilt events only.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-02 12:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_events_rebuilt_request_id",
        "events",
        ["request_id"],
        sqlite_where=sa.text("reconstructed IS 1"),
        postgresql_where=sa.text("reconstructed IS true"),
    )


def downgrade() -> None:
    op.drop_index("ix_events_rebuilt_request_id", table_name="events")
