"""Create events, tag state, tag pulls, quarantine and intake coverage.

Revision ID: 0001
Revises:
Create Date: 2026-11-27 05:13:34.055604
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("event_id", sa.String(length=255), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("target_kind", sa.String(length=16), nullable=True),
        sa.Column("repository", sa.Text(), nullable=True),
        sa.Column("tag", sa.Text(), nullable=True),
        sa.Column("digest", sa.String(length=160), nullable=True),
        sa.Column("media_type", sa.Text(), nullable=True),
        sa.Column("size", sa.BigInteger(), nullable=True),
        sa.Column("from_repository", sa.Text(), nullable=True),
        sa.Column("actor", sa.Text(), nullable=True),
        sa.Column("remote_ip", sa.Text(), nullable=True),
        sa.Column("user_agent", sa.Text(), nullable=True),
        sa.Column("http_method", sa.Text(), nullable=True),
        sa.Column("http_status", sa.Integer(), nullable=True),
        sa.Column("request_id", sa.Text(), nullable=True),
        sa.Column("request_uri", sa.Text(), nullable=True),
        sa.Column("client", sa.String(length=16), nullable=False),
        sa.Column("route", sa.Text(), nullable=True),
        sa.Column("instance", sa.Text(), nullable=True),
        sa.Column("references", sa.Text(), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_events")),
        sa.UniqueConstraint("event_id", name=op.f("uq_events_event_id")),
    )
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.create_index(
            "ix_events_action_occurred_at", ["action", "occurred_at"], unique=False
        )
        batch_op.create_index("ix_events_actor_occurred_at", ["actor", "occurred_at"], unique=False)
        batch_op.create_index("ix_events_occurred_at_id", ["occurred_at", "id"], unique=False)
        batch_op.create_index("ix_events_received_at", ["received_at"], unique=False)
        batch_op.create_index(
            "ix_events_remote_ip_occurred_at", ["remote_ip", "occurred_at"], unique=False
        )
        batch_op.create_index(
            "ix_events_repository_occurred_at", ["repository", "occurred_at"], unique=False
        )

    op.create_table(
        "intake_coverage",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("replica", sa.String(length=255), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_intake_coverage")),
    )
    with op.batch_alter_table("intake_coverage", schema=None) as batch_op:
        batch_op.create_index("ix_intake_coverage_last_seen_at", ["last_seen_at"], unique=False)
        batch_op.create_index(
            "ix_intake_coverage_replica_last_seen_at", ["replica", "last_seen_at"], unique=False
        )

    op.create_table(
        "quarantine",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=64), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("content_type", sa.Text(), nullable=True),
        sa.Column("remote_ip", sa.Text(), nullable=True),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_quarantine")),
    )
    with op.batch_alter_table("quarantine", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_quarantine_received_at"), ["received_at"], unique=False
        )

    op.create_table(
        "tag_pulls",
        sa.Column("repository", sa.String(length=255), nullable=False),
        sa.Column("tag", sa.String(length=128), nullable=False),
        sa.Column("http_method", sa.String(length=8), nullable=False),
        sa.Column("client", sa.String(length=16), nullable=False),
        sa.Column("last_pulled_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("pull_count", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(
            "repository", "tag", "http_method", "client", name=op.f("pk_tag_pulls")
        ),
    )
    op.create_table(
        "tag_state",
        sa.Column("repository", sa.String(length=255), nullable=False),
        sa.Column("tag", sa.String(length=128), nullable=False),
        sa.Column("digest", sa.String(length=160), nullable=True),
        sa.Column("media_type", sa.Text(), nullable=True),
        sa.Column("first_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_pushed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_pushed_by", sa.Text(), nullable=True),
        sa.Column("last_pulled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("pull_count", sa.BigInteger(), nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("repository", "tag", name=op.f("pk_tag_state")),
    )
    with op.batch_alter_table("tag_state", schema=None) as batch_op:
        batch_op.create_index(
            "ix_tag_state_repository_digest", ["repository", "digest"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("tag_state", schema=None) as batch_op:
        batch_op.drop_index("ix_tag_state_repository_digest")

    op.drop_table("tag_state")
    op.drop_table("tag_pulls")
    with op.batch_alter_table("quarantine", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_quarantine_received_at"))

    op.drop_table("quarantine")
    with op.batch_alter_table("intake_coverage", schema=None) as batch_op:
        batch_op.drop_index("ix_intake_coverage_replica_last_seen_at")
        batch_op.drop_index("ix_intake_coverage_last_seen_at")

    op.drop_table("intake_coverage")
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_index("ix_events_repository_occurred_at")
        batch_op.drop_index("ix_events_remote_ip_occurred_at")
        batch_op.drop_index("ix_events_received_at")
        batch_op.drop_index("ix_events_occurred_at_id")
        batch_op.drop_index("ix_events_actor_occurred_at")
        batch_op.drop_index("ix_events_action_occurred_at")

    op.drop_table("events")
