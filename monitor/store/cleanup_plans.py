"""Stored cleanup plans: save, load, list (newest first) and move through their states.

A plan is `planned` when stored, `applying` while an apply runs, then `applied` or `failed`.
Plans are stored grouped and compressed (monitor.cleanup.stored_plan); `prune_plans` keeps the
newest ones and every plan whose apply is unfinished. Functions take a session and never commit.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import datetime
from enum import StrEnum
from typing import Any

import orjson
from sqlalchemy import delete, func, select, text, update
from sqlalchemy.orm import Session, defer

from monitor.cleanup.plan import Plan, Selection, TagDecision
from monitor.cleanup.plan_chunks import CHUNK
from monitor.cleanup.plan_pages import PlanPages
from monitor.cleanup.stored_plan import EncodedPlan, decode, encode_plan
from monitor.errors import NotFound
from monitor.events import format_timestamp
from monitor.store.cleanup_tables import CleanupPlanRow, SavedManifestRow
from monitor.store.pages import beyond, fetch_page


class PlanState(StrEnum):
    PLANNED = "planned"
    APPLYING = "applying"
    APPLIED = "applied"
    FAILED = "failed"


@dataclasses.dataclass(frozen=True, slots=True)
class PlanSummary:
    """A stored plan without its decisions."""

    id: str
    created_at: datetime
    policy_digest: str
    counts: dict[str, int]
    actions: int
    bytes_freed: int
    state: PlanState
    applied_at: datetime | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "created_at": format_timestamp(self.created_at),
            "policy_digest": self.policy_digest,
            "counts": dict(self.counts),
            "actions": self.actions,
            "bytes_freed": self.bytes_freed,
            "state": self.state.value,
            "applied_at": format_timestamp(self.applied_at) if self.applied_at else None,
        }


SUMMARY_ONLY = (defer(CleanupPlanRow.encoded), defer(CleanupPlanRow.body))
"""Load options of a plan's row without its stored form (17 MB for a plan of 517,836 actions):
what a summary needs."""


def _summary(row: CleanupPlanRow) -> PlanSummary:
    return PlanSummary(
        id=row.id,
        created_at=row.created_at,
        policy_digest=row.policy_digest,
        counts={
            "delete": row.delete_count,
            "keep": row.keep_count,
            "protected": row.protected_count,
            "unknown": row.unknown_count,
        },
        actions=row.action_count,
        bytes_freed=row.bytes_freed,
        state=PlanState(row.state),
        applied_at=row.applied_at,
    )


def save_plan(session: Session, plan: Plan, *, policy_digest: str) -> PlanSummary:
    """Store `plan` as `planned`; storing the same plan id again leaves the first one."""
    return save_encoded(session, encode_plan(plan), policy_digest=policy_digest)


def save_encoded(session: Session, plan: EncodedPlan, *, policy_digest: str) -> PlanSummary:
    """Store a plan in its stored form (see `PlanWriter`) as `planned`; storing the same plan
    id again leaves the first one."""
    existing = session.get(CleanupPlanRow, plan.plan_id, options=SUMMARY_ONLY)
    if existing is not None:
        return _summary(existing)
    counts = plan.counts
    row = CleanupPlanRow(
        id=plan.plan_id,
        created_at=plan.created_at,
        policy_digest=policy_digest,
        body=None,
        encoded=plan.data,
        delete_count=counts["delete"],
        keep_count=counts["keep"],
        protected_count=counts["protected"],
        unknown_count=counts["unknown"],
        action_count=plan.actions,
        bytes_freed=plan.bytes_freed,
        state=PlanState.PLANNED.value,
        applied_at=None,
    )
    session.add(row)
    session.flush()
    return _summary(row)


def load_plan(session: Session, plan_id: str) -> tuple[PlanSummary, Plan]:
    """The stored plan `plan_id`; NotFound when there is none."""
    row = session.get(CleanupPlanRow, plan_id)
    if row is None:
        raise NotFound(f"no cleanup plan {plan_id!r}")
    if row.encoded is not None:
        return _summary(row), decode(row.encoded)
    return _summary(row), Plan.from_dict(orjson.loads(row.body or "{}"))


def plan_summary(session: Session, plan_id: str) -> PlanSummary:
    """The stored plan `plan_id`'s summary (the plan itself is not read); NotFound when there
    is none."""
    row = session.scalar(
        select(CleanupPlanRow).options(*SUMMARY_ONLY).where(CleanupPlanRow.id == plan_id)
    )
    if row is None:
        raise NotFound(f"no cleanup plan {plan_id!r}")
    return _summary(row)


def load_decisions(session: Session, plan_id: str) -> tuple[PlanSummary, list[TagDecision]]:
    """The stored plan `plan_id`'s summary and decisions in stored order, read a chunk at a
    time without its actions (a tenth of the time and memory of `load_plan` for a plan of
    517,836 actions); NotFound when there is none."""
    summary, pages = plan_pages(session, plan_id)
    decisions: list[TagDecision] = []
    for start in range(0, pages.decision_count, CHUNK):
        decisions += pages.decisions(start, CHUNK)
    return summary, decisions


def require_plan(session: Session, plan_id: str) -> None:
    """NotFound when there is no stored plan `plan_id` (its row is not read)."""
    found = session.scalar(select(CleanupPlanRow.id).where(CleanupPlanRow.id == plan_id))
    if found is None:
        raise NotFound(f"no cleanup plan {plan_id!r}")


class _RowSource:
    """The bytes of a plan stored in format 5, read from its row a slice at a time: a page
    never reads the whole value (17 MB for a plan of 517,836 actions; 0.2 s to read whole
    from PostgreSQL, 20-30 ms from SQLite). PostgreSQL slices the column (stored out of line
    and not compressed again, so a slice reads its own pages); SQLite reads through an
    incremental blob handle on the row. A plan deleted meanwhile (pruned) is NotFound: each
    read is a statement of its own, which sees the newest commit."""

    def __init__(self, session: Session, plan_id: str) -> None:
        self._session, self._plan_id = session, plan_id
        self._postgres = session.get_bind().dialect.name == "postgresql"

    def read(self, offset: int, length: int) -> bytes:
        return self.read_many([(offset, length)])[0]

    def read_many(self, spans: Sequence[tuple[int, int]]) -> list[bytes]:
        if any(offset < 0 or length < 0 for offset, length in spans):
            raise ValueError("stored plan is cut short")
        if not spans:
            return []
        out = self._postgres_slices(spans) if self._postgres else self._sqlite_slices(spans)
        if [len(part) for part in out] != [length for _, length in spans]:
            raise ValueError("stored plan is cut short")
        return out

    def _postgres_slices(self, spans: Sequence[tuple[int, int]]) -> list[bytes]:
        found = self._session.execute(
            text(
                "SELECT substr(p.encoded, s.o, s.n) FROM cleanup_plans AS p CROSS JOIN LATERAL"
                " unnest(CAST(:o AS integer[]), CAST(:n AS integer[])) WITH ORDINALITY"
                " AS s(o, n, i) WHERE p.id = :id ORDER BY s.i"
            ),
            {
                "o": [offset + 1 for offset, _ in spans],
                "n": [length for _, length in spans],
                "id": self._plan_id,
            },
        ).scalars()
        out = [bytes(part) for part in found]
        if not out:  # pruned since this read began: a statement sees the newest commit
            raise NotFound(f"no cleanup plan {self._plan_id!r}")
        return out

    def _sqlite_slices(self, spans: Sequence[tuple[int, int]]) -> list[bytes]:
        # The row looked up on each read: SQLite reuses the rowid of a deleted last row.
        rowid = self._session.scalar(
            text("SELECT rowid FROM cleanup_plans WHERE id = :id"), {"id": self._plan_id}
        )
        if rowid is None:  # pruned since this read began
            raise NotFound(f"no cleanup plan {self._plan_id!r}")
        connection: Any = self._session.connection().connection.driver_connection
        out: list[bytes] = []
        with connection.blobopen("cleanup_plans", "encoded", rowid, readonly=True) as blob:
            for offset, length in spans:
                blob.seek(min(offset, len(blob)))
                out.append(blob.read(length))
        return out


def plan_pages(session: Session, plan_id: str) -> tuple[PlanSummary, PlanPages]:
    """The stored plan `plan_id`'s summary, and pages of its decisions and actions (a page of
    a plan in format 5 reads only the part of the row it spans); NotFound when there is
    none."""
    row = CleanupPlanRow
    found = session.execute(
        select(row, func.length(row.encoded)).options(*SUMMARY_ONLY).where(row.id == plan_id)
    ).first()
    if found is None:
        raise NotFound(f"no cleanup plan {plan_id!r}")
    summary, size = _summary(found[0]), found[1]
    if size is not None:
        return summary, PlanPages(_RowSource(session, plan_id), size)
    body = session.scalar(select(row.body).where(row.id == plan_id))
    return summary, PlanPages(plan=Plan.from_dict(orjson.loads(body or "{}")))


def latest_selection(session: Session) -> tuple[PlanSummary, Selection] | None:
    """The newest stored plan's summary and the tags it deletes (`Plan.selection`), read from
    its decisions alone (a plan in format 5: its chunks of decisions, not its actions and
    digests): what the next plan's diff needs."""
    newest = latest_summary(session)
    if newest is None:
        return None
    summary, pages = plan_pages(session, newest.id)
    return summary, pages.selection()


def query_plans(
    session: Session, *, limit: int = 50, cursor: str | None = None
) -> tuple[list[PlanSummary], str | None]:
    """A page of plans, newest first, and the cursor of the next page."""
    rows, next_cursor = fetch_page(
        session,
        select(CleanupPlanRow).options(*SUMMARY_ONLY),
        time=CleanupPlanRow.created_at,
        key=CleanupPlanRow.id,
        limit=limit,
        cursor=cursor,
    )
    return [_summary(row) for row in rows], next_cursor


def latest_summary(session: Session, *, before: str | None = None) -> PlanSummary | None:
    """The summary of the newest stored plan (older than plan `before`, when given), without
    reading the plan itself."""
    row = CleanupPlanRow
    query = select(row).options(*SUMMARY_ONLY).order_by(row.created_at.desc(), row.id.desc())
    if before is not None:
        older = session.get(row, before, options=SUMMARY_ONLY)
        if older is None:
            raise NotFound(f"no cleanup plan {before!r}")
        query = query.where(beyond(row.created_at, row.id, (older.created_at, older.id)))
    found = session.scalars(query.limit(1)).first()
    return None if found is None else _summary(found)


def set_plan_state(
    session: Session, plan_id: str, state: PlanState, *, at: datetime | None = None
) -> None:
    values: dict[str, Any] = {"state": state.value}
    if state is PlanState.APPLIED:
        values["applied_at"] = at
    session.execute(update(CleanupPlanRow).where(CleanupPlanRow.id == plan_id).values(**values))


UNFINISHED = (PlanState.APPLYING.value, PlanState.FAILED.value)
"""States of a plan whose apply has not finished: an apply is running, or ended with failures
and can be run again."""


def prune_plans(session: Session, *, keep: int) -> list[str]:
    """Delete stored plans beyond the newest `keep`, except those whose apply is unfinished,
    with the manifests saved to restore them (their journal entries stay, as the audit).
    Returns the ids deleted, oldest first."""
    newest = select(CleanupPlanRow.id).order_by(
        CleanupPlanRow.created_at.desc(), CleanupPlanRow.id.desc()
    )
    kept = set(session.scalars(newest.limit(max(keep, 0))))
    doomed = [
        plan_id
        for plan_id, state in session.execute(
            select(CleanupPlanRow.id, CleanupPlanRow.state).order_by(
                CleanupPlanRow.created_at.asc(), CleanupPlanRow.id.asc()
            )
        )
        if plan_id not in kept and state not in UNFINISHED
    ]
    if doomed:
        session.execute(delete(SavedManifestRow).where(SavedManifestRow.plan_id.in_(doomed)))
        session.execute(delete(CleanupPlanRow).where(CleanupPlanRow.id.in_(doomed)))
    return doomed
