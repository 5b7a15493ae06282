"""The tables of cleanup: stored plans, the journal of what was done, the manifests saved for
restore, and the registry's tags and manifests as reconciliation and intake learned them.
Schema changes go through alembic (monitor/store/migrations) only."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Index, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from monitor.store.columns import WITHOUT_ROWID, Base, BigId, UTCDateTime


class CleanupPlanRow(Base):
    """A stored cleanup plan: the Plan in its stored form (`encoded`, see
    monitor.cleanup.stored_plan; plans stored before it have their JSON in `body`), its counts
    and where it stands."""

    __tablename__ = "cleanup_plans"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    policy_digest: Mapped[str] = mapped_column(String(64))
    body: Mapped[str | None] = mapped_column(Text)
    encoded: Mapped[bytes | None] = mapped_column(LargeBinary)
    delete_count: Mapped[int] = mapped_column(Integer)
    keep_count: Mapped[int] = mapped_column(Integer)
    protected_count: Mapped[int] = mapped_column(Integer)
    unknown_count: Mapped[int] = mapped_column(Integer)
    action_count: Mapped[int] = mapped_column(Integer)
    bytes_freed: Mapped[int] = mapped_column(BigInteger)
    state: Mapped[str] = mapped_column(String(16))
    applied_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class CleanupJournalRow(Base):
    """One audited cleanup action on one tag (tag NULL for an untagged manifest)."""

    __tablename__ = "cleanup_journal"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    plan_id: Mapped[str] = mapped_column(String(32))
    repository: Mapped[str] = mapped_column(String(255))
    tag: Mapped[str | None] = mapped_column(String(128))
    digest: Mapped[str] = mapped_column(String(160))
    action: Mapped[str] = mapped_column(String(16))
    outcome: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(String(64))
    detail: Mapped[str] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (
        Index("ix_cleanup_journal_plan_id_id", "plan_id", "id"),
        Index("ix_cleanup_journal_outcome_at", "outcome", "at"),
    )


class SavedManifestRow(Base):
    """A manifest as it was before cleanup deleted it, kept so the plan can be restored."""

    __tablename__ = "cleanup_saved_manifests"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    plan_id: Mapped[str] = mapped_column(String(32))
    repository: Mapped[str] = mapped_column(String(255))
    digest: Mapped[str] = mapped_column(String(160))
    media_type: Mapped[str] = mapped_column(Text)
    body: Mapped[bytes] = mapped_column(LargeBinary)
    tags: Mapped[str] = mapped_column(Text)
    parent: Mapped[str | None] = mapped_column(String(160))
    saved_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (
        Index(
            "ix_cleanup_saved_manifests_plan_repository_digest",
            "plan_id",
            "repository",
            "digest",
            unique=True,
        ),
    )


class RegistryTagRow(Base):
    """A tag as the last reconciliation saw it in the registry."""

    __tablename__ = "registry_tags"

    repository: Mapped[str] = mapped_column(String(255), primary_key=True)
    tag: Mapped[str] = mapped_column(String(128), primary_key=True)
    digest: Mapped[str] = mapped_column(String(160))
    media_type: Mapped[str | None] = mapped_column(Text)
    seen_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class ManifestInfoRow(Base):
    """A manifest's media type, size, children (an index) and blobs with sizes, as JSON."""

    __tablename__ = "manifest_info"

    repository: Mapped[str] = mapped_column(String(255), primary_key=True)
    digest: Mapped[str] = mapped_column(String(160), primary_key=True)
    media_type: Mapped[str] = mapped_column(Text)
    size: Mapped[int] = mapped_column(BigInteger)
    children: Mapped[str] = mapped_column(Text)
    blobs: Mapped[str] = mapped_column(Text)
    pushed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    learned_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = WITHOUT_ROWID
