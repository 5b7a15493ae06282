"""Tables of events, tags, intake, alerts and jobs. Schema changes go through alembic
(monitor/store/migrations) only.

The tables of cleanup (plans, journal, saved manifests, the registry's tags and manifests) are
in monitor/store/cleanup_tables.py. `METADATA` holds every table of both (what migrations are
compared against).
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    Date,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    false,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from monitor.store import cleanup_tables  # noqa: F401  (its tables join METADATA)
from monitor.store.columns import WITHOUT_ROWID, Base, BigId, UTCDateTime


class EventRow(Base):
    __tablename__ = "events"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(String(255), unique=True)
    source: Mapped[str] = mapped_column(String(16))
    action: Mapped[str] = mapped_column(String(16))
    target_kind: Mapped[str | None] = mapped_column(String(16))
    repository: Mapped[str | None] = mapped_column(Text)
    tag: Mapped[str | None] = mapped_column(Text)
    digest: Mapped[str | None] = mapped_column(String(160))
    media_type: Mapped[str | None] = mapped_column(Text)
    size: Mapped[int | None] = mapped_column(BigInteger)
    from_repository: Mapped[str | None] = mapped_column(Text)
    actor: Mapped[str | None] = mapped_column(Text)
    remote_ip: Mapped[str | None] = mapped_column(Text)
    user_agent: Mapped[str | None] = mapped_column(Text)
    http_method: Mapped[str | None] = mapped_column(Text)
    http_status: Mapped[int | None] = mapped_column(Integer)
    request_id: Mapped[str | None] = mapped_column(Text)
    request_uri: Mapped[str | None] = mapped_column(Text)
    client: Mapped[str] = mapped_column(String(16))
    route: Mapped[str | None] = mapped_column(Text)
    instance: Mapped[str | None] = mapped_column(Text)
    references: Mapped[str | None] = mapped_column(Text)
    detail: Mapped[str | None] = mapped_column(Text)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)
    reconstructed: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())

    __table_args__ = (
        Index("ix_events_request_id", "request_id"),
        # Rebuilt events only: intake asks it of every batch (merge_late_notifications), and
        # the plain index would walk every event sharing a request id.
        Index(
            "ix_events_rebuilt_request_id",
            "request_id",
            sqlite_where=text("reconstructed IS 1"),
            postgresql_where=text("reconstructed IS true"),
        ),
        Index("ix_events_occurred_at_id", "occurred_at", "id"),
        Index("ix_events_repository_occurred_at", "repository", "occurred_at"),
        Index("ix_events_action_occurred_at", "action", "occurred_at"),
        Index("ix_events_actor_occurred_at", "actor", "occurred_at"),
        Index("ix_events_remote_ip_occurred_at", "remote_ip", "occurred_at"),
        # None by `received_at`: no query asks for it (migration 0016).
    )


class EventSourceRow(Base):
    """The newest event per source, kept as events are inserted (what `/metrics` reads)."""

    __tablename__ = "event_sources"

    source: Mapped[str] = mapped_column(String(16), primary_key=True)
    newest_occurred_at: Mapped[datetime] = mapped_column(UTCDateTime)


class TagStateRow(Base):
    """What is known about one tag, kept after its raw events expire."""

    __tablename__ = "tag_state"

    repository: Mapped[str] = mapped_column(String(255), primary_key=True)
    tag: Mapped[str] = mapped_column(String(128), primary_key=True)
    digest: Mapped[str | None] = mapped_column(String(160))
    media_type: Mapped[str | None] = mapped_column(Text)
    first_seen_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_pushed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_pushed_by: Mapped[str | None] = mapped_column(Text)
    last_pulled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    pull_count: Mapped[int] = mapped_column(BigInteger, default=0)
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        Index("ix_tag_state_repository_digest", "repository", "digest"),
        WITHOUT_ROWID,
    )


class TagPullRow(Base):
    """Pulls of a tag broken down by HTTP method and client class (bounded: 2 x 9 rows a tag)."""

    __tablename__ = "tag_pulls"

    repository: Mapped[str] = mapped_column(String(255), primary_key=True)
    tag: Mapped[str] = mapped_column(String(128), primary_key=True)
    http_method: Mapped[str] = mapped_column(String(8), primary_key=True)
    client: Mapped[str] = mapped_column(String(16), primary_key=True)
    last_pulled_at: Mapped[datetime] = mapped_column(UTCDateTime)
    pull_count: Mapped[int] = mapped_column(BigInteger, default=0)

    __table_args__ = WITHOUT_ROWID


class QuarantineRow(Base):
    """An authenticated input that could not be used, kept with why."""

    __tablename__ = "quarantine"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    source: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(String(64))
    message: Mapped[str] = mapped_column(Text)
    content_type: Mapped[str | None] = mapped_column(Text)
    remote_ip: Mapped[str | None] = mapped_column(Text)
    body: Mapped[bytes] = mapped_column(LargeBinary)
    count: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class CoverageRow(Base):
    """An interval during which one replica was up and able to commit what it received."""

    __tablename__ = "intake_coverage"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    replica: Mapped[str] = mapped_column(String(255))
    source: Mapped[str] = mapped_column(String(16))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (
        Index("ix_intake_coverage_replica_last_seen_at", "replica", "last_seen_at"),
        Index("ix_intake_coverage_last_seen_at", "last_seen_at"),
    )


class LogCheckpointRow(Base):
    """Where following a log file stopped; saved in the transaction of the events it produced."""

    __tablename__ = "log_checkpoints"

    path: Mapped[str] = mapped_column(String(1024), primary_key=True)
    device: Mapped[int] = mapped_column(BigInteger)
    inode: Mapped[int] = mapped_column(BigInteger)
    offset: Mapped[int] = mapped_column(BigInteger)
    head_len: Mapped[int] = mapped_column(Integer)
    head_hash: Mapped[str] = mapped_column(String(64))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class AlertRow(Base):
    """One alert per fingerprint: repeats raise `count` and `last_seen_at`."""

    __tablename__ = "alerts"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    fingerprint: Mapped[str] = mapped_column(String(160), unique=True)
    rule: Mapped[str] = mapped_column(String(64))
    severity: Mapped[str] = mapped_column(String(16))
    mode: Mapped[str] = mapped_column(String(16))
    subject: Mapped[str] = mapped_column(Text)
    summary: Mapped[str] = mapped_column(Text)
    evidence: Mapped[str] = mapped_column(Text)
    first_seen_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime)
    count: Mapped[int] = mapped_column(BigInteger, default=1)
    state: Mapped[str] = mapped_column(String(16))
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        Index("ix_alerts_last_seen_at_id", "last_seen_at", "id"),
        Index("ix_alerts_rule_last_seen_at", "rule", "last_seen_at"),
    )


class AlertOutboxRow(Base):
    """A message to Slack, stored before it is sent (see monitor.alerting.outbox)."""

    __tablename__ = "alert_outbox"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    fingerprint: Mapped[str] = mapped_column(String(200))
    rule: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))
    payload: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ref_channel: Mapped[str | None] = mapped_column(String(64))
    ref_ts: Mapped[str | None] = mapped_column(String(64))
    budgeted: Mapped[bool] = mapped_column(Boolean, default=False)
    window_start: Mapped[datetime | None] = mapped_column(UTCDateTime)
    digested: Mapped[bool] = mapped_column(Boolean, default=False)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    done_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        Index("ix_alert_outbox_state_next_attempt_at", "state", "next_attempt_at"),
        Index("ix_alert_outbox_fingerprint_id", "fingerprint", "id"),
        Index("ix_alert_outbox_rule_done_at", "rule", "done_at"),
    )


class DetectorStateRow(Base):
    """The detector's windows and incidents as JSON, and the last events.id it processed."""

    __tablename__ = "detector_state"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    state: Mapped[str | None] = mapped_column(Text)
    cursor: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class DetectorPartRow(Base):
    """A part of a detector's state (version 3): one account's learned addresses, or one
    repository's protected tags, as JSON; rewritten only by a pass that changed it."""

    __tablename__ = "detector_parts"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    part: Mapped[str] = mapped_column(String(64), primary_key=True)
    body: Mapped[str] = mapped_column(Text)


class BlobSizeRow(Base):
    """The size of a blob in a repository, recorded as blob events are stored."""

    __tablename__ = "blob_sizes"

    repository: Mapped[str] = mapped_column(String(255), primary_key=True)
    digest: Mapped[str] = mapped_column(String(160), primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)


class JobLockRow(Base):
    """A lease: the replica holding it runs the job; it lapses at `expires_at`."""

    __tablename__ = "job_locks"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(255))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)


class EventRollupRow(Base):
    """Events per UTC day, repository, action and client class, counted as events are inserted;
    kept after raw events expire."""

    __tablename__ = "event_rollups"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    repository: Mapped[str] = mapped_column(String(255), primary_key=True)
    action: Mapped[str] = mapped_column(String(16), primary_key=True)
    client: Mapped[str] = mapped_column(String(16), primary_key=True)
    count: Mapped[int] = mapped_column(BigInteger)


class AuditRunRow(Base):
    """One audit of the registry's security posture: every check's row as JSON."""

    __tablename__ = "audit_runs"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    checked_at: Mapped[datetime] = mapped_column(UTCDateTime)
    failed: Mapped[int] = mapped_column(Integer)
    results: Mapped[str] = mapped_column(Text)
    cert_not_after: Mapped[datetime | None] = mapped_column(UTCDateTime)


class LogRequestRow(Base):
    """A registry request that emits notification events, read from its log line; `state` is
    `pending` until the reconcile pass finds its notifications (`matched`) or rebuilds the
    missing events (`reconstructed`)."""

    __tablename__ = "log_requests"

    request_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    state: Mapped[str] = mapped_column(String(16))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime)
    action: Mapped[str] = mapped_column(String(16))
    target_kind: Mapped[str] = mapped_column(String(16))
    repository: Mapped[str] = mapped_column(Text)
    tag: Mapped[str | None] = mapped_column(Text)
    digest: Mapped[str | None] = mapped_column(String(160))
    from_repository: Mapped[str | None] = mapped_column(Text)
    actor: Mapped[str | None] = mapped_column(Text)
    remote_ip: Mapped[str | None] = mapped_column(Text)
    user_agent: Mapped[str | None] = mapped_column(Text)
    http_method: Mapped[str] = mapped_column(String(16))
    http_status: Mapped[int] = mapped_column(Integer)
    request_uri: Mapped[str | None] = mapped_column(Text)
    instance: Mapped[str | None] = mapped_column(Text)
    reconstructed_events: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    settled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (Index("ix_log_requests_state_occurred_at", "state", "occurred_at"),)


class RegistryInstanceRow(Base):
    """A registry process seen starting in its log (a restart loses its queued notifications)."""

    __tablename__ = "registry_instances"

    instance: Mapped[str] = mapped_column(String(255), primary_key=True)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    version: Mapped[str | None] = mapped_column(Text)


# Every table: this module's and the cleanup tables (which share the declarative base).
METADATA = Base.metadata


class IntakeInboxRow(Base):
    """A notification body accepted by intake and not yet applied to the events (PostgreSQL;
    with SQLite the bodies wait in a database file of their own, see store/inbox.py)."""

    __tablename__ = "intake_inbox"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    receiver: Mapped[str] = mapped_column(String(255), index=True)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)
    content_type: Mapped[str | None] = mapped_column(Text)
    remote_ip: Mapped[str | None] = mapped_column(Text)
    body: Mapped[bytes] = mapped_column(LargeBinary)


class IntakeAppliedRow(Base):
    """How far an SQLite intake file has been applied, committed with the events it held."""

    __tablename__ = "intake_applied"

    inbox: Mapped[str] = mapped_column(String(255), primary_key=True)
    last_id: Mapped[int] = mapped_column(BigInteger)
    applied_at: Mapped[datetime] = mapped_column(UTCDateTime)
