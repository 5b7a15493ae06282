"""Stored audit runs: each run's rows, the newest served by `GET /v1/audit` and the metrics.
Functions take a session and never commit."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from monitor.audit.model import CheckResult, Status
from monitor.events import format_timestamp
from monitor.store.schema import AuditRunRow

KEEP_RUNS = 500
"""Runs kept; older ones are deleted when a run is recorded (hourly: about three weeks)."""


@dataclasses.dataclass(frozen=True, slots=True)
class AuditRun:
    id: int
    checked_at: datetime
    results: tuple[CheckResult, ...]
    cert_not_after: datetime | None

    @property
    def failed(self) -> list[str]:
        return [r.id for r in self.results if r.status is Status.FAIL]

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "checked_at": format_timestamp(self.checked_at),
            "failed": self.failed,
            "cert_not_after": (
                format_timestamp(self.cert_not_after) if self.cert_not_after is not None else None
            ),
            "checks": [r.to_dict() for r in self.results],
        }


def record_audit(
    session: Session,
    *,
    results: Sequence[CheckResult],
    checked_at: datetime,
    cert_not_after: datetime | None,
    keep: int = KEEP_RUNS,
) -> AuditRun:
    """Store one run; runs beyond the newest `keep` are deleted."""
    row = AuditRunRow(
        checked_at=checked_at,
        failed=sum(1 for r in results if r.status is Status.FAIL),
        results=orjson.dumps([r.to_dict() for r in results]).decode(),
        cert_not_after=cert_not_after,
    )
    session.add(row)
    session.flush()
    session.execute(delete(AuditRunRow).where(AuditRunRow.id <= row.id - keep))
    return AuditRun(row.id, checked_at, tuple(results), cert_not_after)


def latest_audit(session: Session) -> AuditRun | None:
    """The newest stored run, or None."""
    row = session.scalars(select(AuditRunRow).order_by(AuditRunRow.id.desc()).limit(1)).first()
    if row is None:
        return None
    results = tuple(CheckResult.from_dict(item) for item in orjson.loads(row.results))
    return AuditRun(row.id, row.checked_at, results, row.cert_not_after)
