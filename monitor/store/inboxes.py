"""Which intake inbox a store has: a file beside an SQLite store, a table in PostgreSQL, or
the file `notifications.inbox_file` names, on either store."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine

from monitor.errors import ConfigError
from monitor.store.engine import SessionFactory
from monitor.store.inbox import Inbox, inbox_path
from monitor.store.inbox_sqlite import SqliteInbox

if TYPE_CHECKING:
    from monitor.store.inbox_postgres import PostgresInbox


def make_inbox(
    engine: Engine,
    session_factory: SessionFactory,
    *,
    synchronous: str,
    receiver: str,
    inbox_file: Path | None = None,
) -> Inbox:
    """The inbox of the store `engine` opens (not opened yet): `inbox_file` when it names one."""
    url = engine.url
    if inbox_file is not None:
        file = SqliteInbox(
            inbox_file.absolute(),
            synchronous=synchronous,
            session_factory=session_factory,
            dialect=url.get_backend_name(),
            own=True,
        )
        if url.get_backend_name() == "sqlite":
            return file
        from monitor.store.inbox_adopting import AdoptingInbox

        return AdoptingInbox(file, _table(engine, session_factory, receiver=receiver))
    if url.get_backend_name() == "sqlite":
        database = url.database or ""
        if database in ("", ":memory:") or database.startswith("file:"):
            raise ConfigError(
                "database.url",
                "notifications need an SQLite store in a file (the intake inbox is kept beside it)",
            )
        return SqliteInbox(
            inbox_path(database), synchronous=synchronous, session_factory=session_factory
        )
    return _table(engine, session_factory, receiver=receiver)


def _table(engine: Engine, session_factory: SessionFactory, *, receiver: str) -> PostgresInbox:
    """PostgreSQL's `intake_inbox` table."""
    # Imported here: psycopg and libpq are about 20 MiB of memory that an SQLite deployment
    # (serve and its applier process both) never needs.
    from monitor.store.inbox_postgres import PostgresInbox

    conninfo = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    return PostgresInbox(conninfo, receiver=receiver, session_factory=session_factory)
