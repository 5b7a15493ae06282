"""Quarantined inputs: authenticated bodies or lines that could not become events.

Functions take a session and never commit.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from monitor.events import format_timestamp
from monitor.ingest.boundary import safe_text
from monitor.store.schema import QuarantineRow


@dataclasses.dataclass(frozen=True, slots=True)
class Quarantined:
    """One request body (or one batch of log lines) that held `count` unusable items."""

    source: str
    reason: str
    message: str
    body: bytes
    content_type: str | None = None
    remote_ip: str | None = None
    count: int = 1
    received_at: datetime | None = None  # when the body was accepted; None: when it is stored


def combine(
    source: str,
    parts: Sequence[tuple[str, str, bytes]],
    *,
    count: int | None = None,
    content_type: str | None = None,
    remote_ip: str | None = None,
    max_body: int = 1 << 20,
) -> Quarantined | None:
    """One quarantine row for the unusable items of one body: `(reason, message, raw)` each.

    The raw items are kept one a line up to `max_body` bytes; `count` (default: the number of
    parts) counts every item, also those beyond the parts given.
    """
    if not parts:
        return None
    reasons = sorted({reason for reason, _message, _raw in parts})
    total = count if count is not None else len(parts)
    messages = [f"{reason}: {message}" for reason, message, _raw in parts[:5]]
    if total > len(messages):
        messages.append(f"… {total} in all")
    body = bytearray()
    for _reason, _message, raw in parts:
        if len(body) + len(raw) + 1 > max_body:
            body += raw[: max(max_body - len(body), 0)]
            break
        body += raw + b"\n"
    return Quarantined(
        source=source,
        reason=reasons[0] if len(reasons) == 1 else "several",
        message="; ".join(messages),
        body=bytes(body),
        content_type=content_type,
        remote_ip=remote_ip,
        count=total,
    )


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
            "count": self.item.count,
            "size": len(self.item.body),
            "body_preview": self.item.body[:preview_bytes].decode("utf-8", "replace"),
            "received_at": format_timestamp(self.received_at),
        }


def add_quarantined(
    session: Session,
    items: list[Quarantined],
    *,
    received_at: datetime,
    max_rows: int | None = None,
) -> int:
    """Add `items`; with `max_rows`, expire the oldest rows beyond it. Returns rows expired.

    Ids only grow, so "beyond the newest `max_rows` ids" is one indexed range delete, and the
    table never holds more than `max_rows` rows.
    """
    if not items:
        return 0
    rows = [
        QuarantineRow(
            source=item.source,
            reason=safe_text(item.reason, 64),
            message=safe_text(item.message, 2000),
            content_type=safe_text(item.content_type, 255) if item.content_type else None,
            remote_ip=safe_text(item.remote_ip, 255) if item.remote_ip else None,
            body=item.body,
            count=min(item.count, 2**31 - 1),
            received_at=item.received_at or received_at,
        )
        for item in items
    ]
    session.add_all(rows)
    if max_rows is None:
        return 0
    session.flush()
    newest = max(row.id for row in rows)
    result = session.execute(delete(QuarantineRow).where(QuarantineRow.id <= newest - max_rows))
    return int(getattr(result, "rowcount", 0) or 0)


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
                count=row.count,
            ),
        )
        for row in session.scalars(query)
    ]
