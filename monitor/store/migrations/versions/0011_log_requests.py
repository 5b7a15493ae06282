"""Registry requests read from logs, matched against notifications; reconstructed events.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-30 21:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("events") as batch:
        batch.add_column(
            sa.Column("reconstructed", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch.create_index("ix_events_request_id", ["request_id"])
    op.create_table(
        "log_requests",
        sa.Column("request_id", sa.String(length=255), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("target_kind", sa.String(length=16), nullable=False),
        sa.Column("repository", sa.Text(), nullable=False),
        sa.Column("tag", sa.Text(), nullable=True),
        sa.Column("digest", sa.String(length=160), nullable=True),
        sa.Column("from_repository", sa.Text(), nullable=True),
        sa.Column("actor", sa.Text(), nullable=True),
        sa.Column("remote_ip", sa.Text(), nullable=True),
        sa.Column("user_agent", sa.Text(), nullable=True),
        sa.Column("http_method", sa.String(length=16), nullable=False),
        sa.Column("http_status", sa.Integer(), nullable=False),
        sa.Column("request_uri", sa.Text(), nullable=True),
        sa.Column("instance", sa.Text(), nullable=True),
        sa.Column("reconstructed_events", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("settled_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("request_id", name=op.f("pk_log_requests")),
    )
    op.create_index("ix_log_requests_state_occurred_at", "log_requests", ["state", "occurred_at"])
    op.create_table(
        "registry_instances",
        sa.Column("instance", sa.String(length=255), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("version", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("instance", name=op.f("pk_registry_instances")),
    )


def downgrade() -> None:
    op.drop_table("registry_instances")
    op.drop_index("ix_log_requests_state_occurred_at", table_name="log_requests")
    op.drop_table("log_requests")
    with op.batch_alter_table("events") as batch:
        batch.drop_index("ix_events_request_id")
        batch.drop_column("reconstructed")
