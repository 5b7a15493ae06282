"""What differs between the two stores, in one place: the name of the session's database and the
INSERT that can say ON CONFLICT (PostgreSQL's and SQLite's are two classes in SQLAlchemy)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

Insert = postgresql.Insert | sqlite.Insert


def dialect_of(session: Session) -> str:
    """`postgresql` or `sqlite`: the database the session is bound to."""
    return session.get_bind().dialect.name


def upsert(dialect: str, table: Any) -> Insert:
    """An INSERT into `table` that takes `on_conflict_do_nothing`/`on_conflict_do_update`."""
    if dialect == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)
