"""The SQL `Outbox` (monitor.alerting.outbox): messages stored first, then delivered.

Every method runs in the caller's session; the delivery job owns the transaction. On
PostgreSQL `due` locks the rows it returns with FOR UPDATE SKIP LOCKED, so two replicas
delivering at once never take the same row.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import and_, exists, func, insert, select, update
from sqlalchemy.orm import Session, aliased

from monitor.alerting.notifier import DeliveryRef
from monitor.alerting.outbox import Kind, OutboxRow
from monitor.alerting.throttle import Suppressed
from monitor.alerts import Alert, Digest
from monitor.store.dialect import dialect_of
from monitor.store.schema import AlertOutboxRow

PENDING, DONE, FAILED, SUPPRESSED = "pending", "done", "failed", "suppressed"
STATES = (PENDING, DONE, FAILED, SUPPRESSED)


def enqueue(session: Session, kind: Kind, payload: Alert | Digest, *, now: datetime) -> int:
    """Queue one message, due at `now`; returns its id."""
    row = AlertOutboxRow(
        fingerprint=payload.fingerprint,
        rule=payload.rule,
        kind=kind.value,
        payload=orjson.dumps(payload.to_dict()).decode(),
        state=PENDING,
        attempts=0,
        next_attempt_at=now,
        budgeted=False,
        digested=False,
        created_at=now,
    )
    session.add(row)
    session.flush()
    return row.id


def enqueue_many(
    session: Session, messages: Sequence[tuple[Kind, Alert | Digest]], *, now: datetime
) -> None:
    """Queue messages, in order, due at `now`, in one statement (`enqueue` for a detection
    pass that queues thousands)."""
    if not messages:
        return
    session.execute(
        insert(AlertOutboxRow),
        [
            {
                "fingerprint": payload.fingerprint,
                "rule": payload.rule,
                "kind": kind.value,
                "payload": orjson.dumps(payload.to_dict()).decode(),
                "state": PENDING,
                "attempts": 0,
                "next_attempt_at": now,
                "budgeted": False,
                "digested": False,
                "created_at": now,
            }
            for kind, payload in messages
        ],
    )


def _payload(kind: Kind, text: str) -> Alert | Digest:
    data: dict[str, Any] = orjson.loads(text)
    return Digest.from_dict(data) if kind is Kind.DIGEST else Alert.from_dict(data)


def outbox_depth(session: Session) -> dict[str, int]:
    """Rows per state (every state present, zero when none)."""
    counts = dict.fromkeys(STATES, 0)
    query = select(AlertOutboxRow.state, func.count()).group_by(AlertOutboxRow.state)
    for state, count in session.execute(query):
        counts[str(state)] = int(count)
    return counts


class SqlOutbox:
    """`Outbox` over the `alert_outbox` table, in one session."""

    def __init__(self, session: Session) -> None:
        self._session = session
        self._postgres = dialect_of(session) == "postgresql"

    def _row(self, row_id: int) -> AlertOutboxRow:
        row = self._session.get(AlertOutboxRow, row_id)
        if row is None:
            raise KeyError(f"no outbox row {row_id}")
        return row

    def _first_ref(self, fingerprint: str) -> DeliveryRef | None:
        found = self._session.execute(
            select(AlertOutboxRow.ref_channel, AlertOutboxRow.ref_ts)
            .where(
                AlertOutboxRow.fingerprint == fingerprint,
                AlertOutboxRow.ref_ts.is_not(None),
            )
            .order_by(AlertOutboxRow.id.asc())
            .limit(1)
        ).first()
        if found is None or found[0] is None or found[1] is None:
            return None
        return DeliveryRef(channel=found[0], ts=found[1])

    def due(self, now: datetime, limit: int) -> Sequence[OutboxRow]:
        older = aliased(AlertOutboxRow)
        row = AlertOutboxRow
        query = (
            select(row)
            .where(row.state == PENDING, row.next_attempt_at <= now)
            .where(
                ~exists().where(
                    and_(
                        older.fingerprint == row.fingerprint,
                        older.state == PENDING,
                        older.id < row.id,
                    )
                )
            )
            .order_by(row.id.asc())
            .limit(limit)
        )
        if self._postgres:
            query = query.with_for_update(skip_locked=True, of=row)
        out: list[OutboxRow] = []
        for item in self._session.scalars(query):
            kind = Kind(item.kind)
            out.append(
                OutboxRow(
                    id=item.id,
                    kind=kind,
                    payload=_payload(kind, item.payload),
                    attempts=item.attempts,
                    next_attempt_at=item.next_attempt_at,
                    first=self._first_ref(item.fingerprint),
                )
            )
        return out

    def sent_at(self, rule: str, since: datetime) -> Sequence[datetime]:
        row = AlertOutboxRow
        query = select(row.done_at).where(
            row.rule == rule, row.budgeted.is_(True), row.state == DONE, row.done_at >= since
        )
        return [at for at in self._session.scalars(query) if at is not None]

    def mark_done(
        self, row_id: int, *, ref: DeliveryRef | None, at: datetime, budgeted: bool
    ) -> None:
        row = self._row(row_id)
        row.state = DONE
        row.done_at = at
        row.budgeted = budgeted
        if ref is not None and self._first_ref(row.fingerprint) is None:
            row.ref_channel, row.ref_ts = ref.channel, ref.ts
        self._session.flush()

    def reschedule(self, row_id: int, *, next_attempt_at: datetime, error: str) -> None:
        row = self._row(row_id)
        row.attempts += 1
        row.next_attempt_at = next_attempt_at
        row.last_error = error[:2000]
        self._session.flush()

    def mark_failed(self, row_id: int, *, error: str, at: datetime) -> None:
        row = self._row(row_id)
        row.state = FAILED
        row.attempts += 1
        row.last_error = error[:2000]
        row.done_at = at
        self._session.flush()

    def suppress(self, row_id: int, *, window_start: datetime) -> None:
        row = self._row(row_id)
        row.state = SUPPRESSED
        row.window_start = window_start
        self._session.flush()

    def undigested(self) -> Sequence[tuple[int, Suppressed]]:
        row = AlertOutboxRow
        query = (
            select(row)
            .where(row.state == SUPPRESSED, row.digested.is_(False), row.kind != Kind.DIGEST.value)
            .order_by(row.id.asc())
        )
        if self._postgres:
            query = query.with_for_update(skip_locked=True)
        out: list[tuple[int, Suppressed]] = []
        for item in self._session.scalars(query):
            payload = _payload(Kind(item.kind), item.payload)
            if isinstance(payload, Alert) and item.window_start is not None:
                out.append((item.id, Suppressed(payload, item.window_start)))
        return out

    def add_digest(self, digest: Digest, *, covers: Sequence[int], now: datetime) -> None:
        if covers:
            self._session.execute(
                update(AlertOutboxRow)
                .where(AlertOutboxRow.id.in_(list(covers)))
                .values(digested=True)
            )
        enqueue(self._session, Kind.DIGEST, digest, now=now)
