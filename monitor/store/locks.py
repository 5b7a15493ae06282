"""Job leases that work on SQLite and PostgreSQL: the replica holding one runs the job.

A lease is a row (name, holder, expires_at). `acquire` takes it when there is none or when it
has lapsed (a holder extends it with `renew`, not `acquire`); the insert-or-update is one statement
(`INSERT … ON CONFLICT DO UPDATE … WHERE`), so two replicas racing for it cannot both win.
Functions take a session and never commit; commit right after `acquire` so others see it.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from monitor.store.dialect import dialect_of, upsert
from monitor.store.schema import JobLockRow


def acquire_lock(
    session: Session, *, name: str, holder: str, now: datetime, ttl: timedelta
) -> bool:
    """Take the lease `name` for `holder` until `now + ttl`; False while anyone holds it."""
    table: Any = JobLockRow.__table__
    stmt = upsert(dialect_of(session), table).values(name=name, holder=holder, expires_at=now + ttl)
    c = table.c
    stmt = stmt.on_conflict_do_update(
        index_elements=[c.name],
        set_={"holder": stmt.excluded.holder, "expires_at": stmt.excluded.expires_at},
        where=c.expires_at <= now,
    )
    session.execute(stmt)
    current = session.execute(
        select(JobLockRow.holder, JobLockRow.expires_at).where(JobLockRow.name == name)
    ).first()
    return current is not None and tuple(current) == (holder, now + ttl)


def renew_lock(session: Session, *, name: str, holder: str, now: datetime, ttl: timedelta) -> bool:
    """Push the expiry of a lease `holder` still holds; False when it lapsed to someone else."""
    result = session.execute(
        update(JobLockRow)
        .where(JobLockRow.name == name, JobLockRow.holder == holder)
        .values(expires_at=now + ttl)
    )
    return bool(getattr(result, "rowcount", 0))


def release_lock(session: Session, *, name: str, holder: str, until: datetime) -> None:
    """Let the lease lapse at `until` (the time of release, or later to keep others out)."""
    session.execute(
        update(JobLockRow)
        .where(JobLockRow.name == name, JobLockRow.holder == holder)
        .values(expires_at=until)
    )


def lock_holder(session: Session, *, name: str, now: datetime) -> str | None:
    """Who holds `name` at `now`, if anyone."""
    row = session.get(JobLockRow, name)
    if row is None or row.expires_at <= now:
        return None
    return row.holder
