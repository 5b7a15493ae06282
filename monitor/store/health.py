"""Whether the store would take a write now (what `/readyz` answers)."""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy import Engine, text
from sqlalchemy.exc import SQLAlchemyError


def write_readiness(engine: Engine) -> str | None:
    """None when a write would succeed now; otherwise why not.

    PostgreSQL: the connection answers and is not read-only (a standby, or
    `default_transaction_read_only`); a read-only connection is discarded, so the next check
    sees a fresh one. SQLite: the database answers, is not `query_only`, and its file and
    directory are writable.
    """
    try:
        with engine.connect() as connection:
            if engine.dialect.name == "postgresql":
                read_only = connection.execute(
                    text("SELECT current_setting('transaction_read_only')")
                ).scalar_one()
                if read_only == "on":
                    connection.invalidate()
                    return "the database is read-only"
                return None
            if connection.execute(text("PRAGMA query_only")).scalar_one():
                return "the database is query-only"
    except SQLAlchemyError as exc:
        return f"the store does not answer ({type(exc).__name__})"
    database = engine.url.database
    if database and database != ":memory:":
        path = Path(database)
        for target in (path, path.parent):
            if target.exists() and not os.access(target, os.W_OK):
                return f"{target} is not writable"
    return None
