"""The cleanup journal: one audit row per action on a tag, and the manifests saved for restore.

Functions take a session and never commit; `monitor.pipeline.cleanup.SqlJournal` commits each
call on its own so that a crash mid-apply leaves a journal a new run resumes from.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from monitor.cleanup.journal import JournalEntry, Outcome, SavedManifest
from monitor.events import format_timestamp
from monitor.store.cleanup_tables import CleanupJournalRow, SavedManifestRow


def record_entry(session: Session, entry: JournalEntry) -> None:
    """One row per tag of `entry` (one row with no tag for an untagged manifest)."""
    action = "restore" if entry.reason == "restore" else "delete"
    for tag in entry.tags or (None,):
        session.add(
            CleanupJournalRow(
                plan_id=entry.plan_id,
                repository=entry.repository,
                tag=tag,
                digest=entry.digest,
                action=action,
                outcome=entry.outcome.value,
                reason=str(entry.reason),
                detail=entry.detail,
                at=entry.at,
            )
        )


def deleted_digests(session: Session, plan_id: str) -> set[tuple[str, str]]:
    """(repository, digest) that the journal records as deleted for `plan_id`."""
    rows = session.execute(
        select(CleanupJournalRow.repository, CleanupJournalRow.digest).where(
            CleanupJournalRow.plan_id == plan_id,
            CleanupJournalRow.action == "delete",
            CleanupJournalRow.outcome == Outcome.DELETED.value,
        )
    ).all()
    return {(r, d) for r, d in rows}


def save_manifest(session: Session, saved: SavedManifest, *, at: datetime) -> None:
    """Keep `saved`; a manifest already kept for the plan is not stored twice."""
    existing = session.scalars(
        select(SavedManifestRow).where(
            SavedManifestRow.plan_id == saved.plan_id,
            SavedManifestRow.repository == saved.repository,
            SavedManifestRow.digest == saved.digest,
        )
    ).first()
    if existing is not None:
        if saved.tags and not existing.tags:
            existing.tags = ",".join(saved.tags)
            existing.parent = saved.parent
        return
    session.add(
        SavedManifestRow(
            plan_id=saved.plan_id,
            repository=saved.repository,
            digest=saved.digest,
            media_type=saved.media_type,
            body=saved.body,
            tags=",".join(saved.tags),
            parent=saved.parent,
            saved_at=at,
        )
    )


def saved_manifests(session: Session, plan_id: str) -> list[SavedManifest]:
    rows = session.scalars(
        select(SavedManifestRow)
        .where(SavedManifestRow.plan_id == plan_id)
        .order_by(SavedManifestRow.id)
    )
    return [
        SavedManifest(
            plan_id=r.plan_id,
            repository=r.repository,
            digest=r.digest,
            media_type=r.media_type,
            body=r.body,
            tags=tuple(t for t in r.tags.split(",") if t),
            parent=r.parent,
        )
        for r in rows
    ]


@dataclasses.dataclass(frozen=True, slots=True)
class JournalRow:
    plan_id: str
    repository: str
    tag: str | None
    digest: str
    action: str
    outcome: str
    reason: str
    detail: str
    at: datetime

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["at"] = format_timestamp(self.at)
        return out


def _journal_row(r: CleanupJournalRow) -> JournalRow:
    return JournalRow(
        r.plan_id, r.repository, r.tag, r.digest, r.action, r.outcome, r.reason, r.detail, r.at
    )


def list_journal(session: Session, *, plan_id: str) -> list[JournalRow]:
    """The audit rows of one plan, in the order they were written."""
    rows = session.scalars(
        select(CleanupJournalRow)
        .where(CleanupJournalRow.plan_id == plan_id)
        .order_by(CleanupJournalRow.id)
    )
    return [_journal_row(r) for r in rows]


def journal_page(
    session: Session, *, plan_id: str, limit: int, after: int = 0
) -> tuple[list[JournalRow], int | None]:
    """Up to `limit` audit rows of one plan written after row `after`, in the order they were
    written, and the row the next page goes on after (None after the last)."""
    rows = list(
        session.scalars(
            select(CleanupJournalRow)
            .where(CleanupJournalRow.plan_id == plan_id, CleanupJournalRow.id > after)
            .order_by(CleanupJournalRow.id)
            .limit(limit + 1)
        )
    )
    page = rows[:limit]
    return [_journal_row(r) for r in page], page[-1].id if len(rows) > limit else None
