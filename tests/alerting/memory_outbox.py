"""An in-memory `Outbox` with the semantics the SQL one must have."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import datetime

from monitor.alerting.notifier import DeliveryRef
from monitor.alerting.outbox import Kind, OutboxRow
from monitor.alerting.throttle import Suppressed
from monitor.alerts import Alert, Digest


@dataclasses.dataclass
class Row:
    id: int
    kind: Kind
    payload: Alert | Digest
    next_attempt_at: datetime
    attempts: int = 0
    status: str = "pending"  # pending | done | failed | suppressed | digested
    ref: DeliveryRef | None = None
    sent_at: datetime | None = None
    budgeted: bool = False
    window_start: datetime | None = None
    error: str | None = None


class MemoryOutbox:
    def __init__(self) -> None:
        self.rows: list[Row] = []

    def add(self, kind: Kind, payload: Alert | Digest, now: datetime) -> int:
        row = Row(id=len(self.rows) + 1, kind=kind, payload=payload, next_attempt_at=now)
        self.rows.append(row)
        return row.id

    def row(self, row_id: int) -> Row:
        return self.rows[row_id - 1]

    def statuses(self) -> list[str]:
        return [row.status for row in self.rows]

    def _first_ref(self, fingerprint: str) -> DeliveryRef | None:
        for row in self.rows:
            if row.payload.fingerprint == fingerprint and row.ref is not None:
                return row.ref
        return None

    def due(self, now: datetime, limit: int) -> Sequence[OutboxRow]:
        out: list[OutboxRow] = []
        blocked: set[str] = set()
        for row in self.rows:
            if row.status != "pending":
                continue
            fingerprint = row.payload.fingerprint
            if fingerprint in blocked:
                continue
            blocked.add(fingerprint)
            if row.next_attempt_at <= now and len(out) < limit:
                out.append(
                    OutboxRow(
                        id=row.id,
                        kind=row.kind,
                        payload=row.payload,
                        attempts=row.attempts,
                        next_attempt_at=row.next_attempt_at,
                        first=self._first_ref(fingerprint),
                    )
                )
        return out

    def sent_at(self, rule: str, since: datetime) -> Sequence[datetime]:
        return [
            row.sent_at
            for row in self.rows
            if row.budgeted
            and row.sent_at is not None
            and row.payload.rule == rule
            and row.sent_at >= since
        ]

    def mark_done(
        self, row_id: int, *, ref: DeliveryRef | None, at: datetime, budgeted: bool
    ) -> None:
        row = self.row(row_id)
        assert row.status == "pending", f"row {row_id} is {row.status}"
        row.status, row.ref, row.sent_at, row.budgeted = "done", ref, at, budgeted

    def reschedule(self, row_id: int, *, next_attempt_at: datetime, error: str) -> None:
        row = self.row(row_id)
        row.attempts += 1
        row.next_attempt_at, row.error = next_attempt_at, error

    def mark_failed(self, row_id: int, *, error: str, at: datetime) -> None:
        row = self.row(row_id)
        row.status, row.error = "failed", error

    def suppress(self, row_id: int, *, window_start: datetime) -> None:
        row = self.row(row_id)
        row.status, row.window_start = "suppressed", window_start

    def undigested(self) -> Sequence[tuple[int, Suppressed]]:
        out = []
        for row in self.rows:
            if row.status == "suppressed" and isinstance(row.payload, Alert):
                assert row.window_start is not None
                out.append((row.id, Suppressed(row.payload, row.window_start)))
        return out

    def add_digest(self, digest: Digest, *, covers: Sequence[int], now: datetime) -> None:
        for row_id in covers:
            self.row(row_id).status = "digested"
        self.add(Kind.DIGEST, digest, now)
