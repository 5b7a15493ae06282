"""Quarantined inputs: authenticated bodies or lines that could not become events.

Functions take a session and never commit.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from monitor.store.schema import QuarantineRow


@dataclasses.dataclass(frozen=True, slots=True)
class Quarantined:
    source: str
    reason: str
    message: str
    body: bytes
    content_type: str | None = None
    remote_ip: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class StoredQuarantine:
    id: int
    item: Quarantined
    received_at: datetime

    def to_dict(self, *, preview_bytes: int = 2048) -> dict[str, Any]:
        return {
            "id": self.id,
            "source": self.item.source,
            "reason": self.item.reason,
            "message": self.item.message,
            "content_type": self.item.content_type,
            "remote_ip": self.item.remote_ip,
            "size": len(self.item.body),
            "body_preview": self.item.body[:preview_bytes].decode("utf-8", "replace"),
            "received_at": self.received_at.isoformat().replace("+00:00", "Z"),
        }


def add_quarantined(session: Session, items: list[Quarantined], *, received_at: datetime) -> None:
    for item in items:
        session.add(
            QuarantineRow(
                source=item.source,
                reason=item.reason,
                message=item.message[:2000],
                content_type=item.content_type,
                remote_ip=item.remote_ip,
                body=item.body,
                received_at=received_at,
            )
        )


def list_quarantined(
    session: Session, *, limit: int, before_id: int | None = None
) -> list[StoredQuarantine]:
    """Newest first."""
    query = select(QuarantineRow).order_by(QuarantineRow.id.desc()).limit(limit)
    if before_id is not None:
        query = query.where(QuarantineRow.id < before_id)
    return [
        StoredQuarantine(
            id=row.id,
            received_at=row.received_at,
            item=Quarantined(
                source=row.source,
                reason=row.reason,
                message=row.message,
                body=row.body,
                content_type=row.content_type,
                remote_ip=row.remote_ip,
            ),
        )
        for row in session.scalars(query)
    ]
