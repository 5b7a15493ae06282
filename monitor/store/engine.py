"""Engine and session factory for SQLite (WAL) or PostgreSQL."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import ExceptionContext, make_url
from sqlalchemy.orm import Session, sessionmaker

from monitor.settings import DatabaseSettings
from monitor.store.failures import READ_ONLY_CODES, sqlstate

SessionFactory = sessionmaker[Session]

SQLITE_CACHE_KIB = 512
"""SQLite's page cache per connection (its default is 2,000 KiB). Every process of `serve`
keeps a few pooled connections for months, and each cache fills to its size on a large store:
the pages are read from the operating system's cache instead, which all processes share."""


def make_engine(settings: DatabaseSettings) -> Engine:
    """The store's engine; creates the SQLite data directory when needed."""
    url = make_url(settings.effective_url())
    if url.get_backend_name() == "sqlite":
        busy_ms = max(int(settings.sqlite_busy_timeout_seconds * 1000), 0)
        database = url.database or ""
        if database and database != ":memory:":
            settings.data_dir.mkdir(parents=True, exist_ok=True) if settings.url is None else None
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": busy_ms / 1000},
            pool_size=settings.pool_size,
            max_overflow=10,
        )
        synchronous = settings.sqlite_synchronous.upper()

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA synchronous={synchronous}")
            cursor.execute(f"PRAGMA busy_timeout={busy_ms}")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")
            cursor.close()

        return engine
    engine = create_engine(
        url,
        pool_pre_ping=True,
        pool_size=settings.pool_size,
        max_overflow=10,
        pool_timeout=5,
        connect_args={"connect_timeout": 5},
    )
    event.listen(engine, "handle_error", _discard_read_only)
    event.listen(engine, "connect", _utc_session)
    return engine


def _utc_session(dbapi_connection: Any, _record: Any) -> None:
    """Each PostgreSQL session in UTC: psycopg then returns times in `datetime.UTC`, which
    `utc_time` passes through (converting a million times from the server's zone, `Etc/UTC`
    on Debian, cost a second of a plan). Every statement of the store names its zone where
    one matters, so this changes no value."""
    with dbapi_connection.cursor() as cursor:
        cursor.execute("SET TIME ZONE 'UTC'")
    dbapi_connection.commit()


def _discard_read_only(context: ExceptionContext) -> None:
    """A connection that found the database read-only is discarded, not pooled again.

    A session keeps `default_transaction_read_only` (or a standby's read-only state) from the
    moment it connected; after a failover or once the database is writable again, only a new
    connection can write. Marking the error a disconnect makes the pool drop the connection.
    """
    if sqlstate(context.original_exception) in READ_ONLY_CODES:
        context.is_disconnect = True


def make_session_factory(engine: Engine) -> SessionFactory:
    return sessionmaker(engine, expire_on_commit=False)
