"""Create cleanup plans, journal, saved manifests, registry tags, manifest info and job locks.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27 05:40:12.108035
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "cleanup_journal",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("plan_id", sa.String(length=32), nullable=False),
        sa.Column("repository", sa.String(length=255), nullable=False),
        sa.Column("tag", sa.String(length=128), nullable=True),
        sa.Column("digest", sa.String(length=160), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=64), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cleanup_journal")),
    )
    with op.batch_alter_table("cleanup_journal", schema=None) as batch_op:
        batch_op.create_index("ix_cleanup_journal_plan_id_id", ["plan_id", "id"], unique=False)

    op.create_table(
        "cleanup_plans",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("policy_digest", sa.String(length=64), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("delete_count", sa.Integer(), nullable=False),
        sa.Column("keep_count", sa.Integer(), nullable=False),
        sa.Column("protected_count", sa.Integer(), nullable=False),
        sa.Column("unknown_count", sa.Integer(), nullable=False),
        sa.Column("action_count", sa.Integer(), nullable=False),
        sa.Column("bytes_freed", sa.BigInteger(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("applied_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cleanup_plans")),
    )
    with op.batch_alter_table("cleanup_plans", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_cleanup_plans_created_at"), ["created_at"], unique=False
        )

    op.create_table(
        "cleanup_saved_manifests",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("plan_id", sa.String(length=32), nullable=False),
        sa.Column("repository", sa.String(length=255), nullable=False),
        sa.Column("digest", sa.String(length=160), nullable=False),
        sa.Column("media_type", sa.Text(), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("tags", sa.Text(), nullable=False),
        sa.Column("parent", sa.String(length=160), nullable=True),
        sa.Column("saved_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cleanup_saved_manifests")),
    )
    with op.batch_alter_table("cleanup_saved_manifests", schema=None) as batch_op:
        batch_op.create_index(
            "ix_cleanup_saved_manifests_plan_repository_digest",
            ["plan_id", "repository", "digest"],
            unique=True,
        )

    op.create_table(
        "job_locks",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("holder", sa.String(length=255), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_job_locks")),
    )
    op.create_table(
        "manifest_info",
        sa.Column("repository", sa.String(length=255), nullable=False),
        sa.Column("digest", sa.String(length=160), nullable=False),
        sa.Column("media_type", sa.Text(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("children", sa.Text(), nullable=False),
        sa.Column("blobs", sa.Text(), nullable=False),
        sa.Column("pushed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("learned_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("repository", "digest", name=op.f("pk_manifest_info")),
    )
    op.create_table(
        "registry_tags",
        sa.Column("repository", sa.String(length=255), nullable=False),
        sa.Column("tag", sa.String(length=128), nullable=False),
        sa.Column("digest", sa.String(length=160), nullable=False),
        sa.Column("media_type", sa.Text(), nullable=True),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("repository", "tag", name=op.f("pk_registry_tags")),
    )


def downgrade() -> None:
    op.drop_table("registry_tags")
    op.drop_table("manifest_info")
    op.drop_table("job_locks")
    with op.batch_alter_table("cleanup_saved_manifests", schema=None) as batch_op:
        batch_op.drop_index("ix_cleanup_saved_manifests_plan_repository_digest")

    op.drop_table("cleanup_saved_manifests")
    with op.batch_alter_table("cleanup_plans", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_cleanup_plans_created_at"))

    op.drop_table("cleanup_plans")
    with op.batch_alter_table("cleanup_journal", schema=None) as batch_op:
        batch_op.drop_index("ix_cleanup_journal_plan_id_id")

    op.drop_table("cleanup_journal")
