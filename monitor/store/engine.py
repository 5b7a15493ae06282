"""Engine and session factory for SQLite (WAL) or PostgreSQL."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from monitor.settings import DatabaseSettings

SessionFactory = sessionmaker[Session]


def make_engine(settings: DatabaseSettings) -> Engine:
    """The store's engine; creates the SQLite data directory when needed."""
    url = make_url(settings.effective_url())
    if url.get_backend_name() == "sqlite":
        database = url.database or ""
        if database and database != ":memory:":
            settings.data_dir.mkdir(parents=True, exist_ok=True) if settings.url is None else None
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 30},
            pool_size=settings.pool_size,
            max_overflow=10,
        )
        synchronous = settings.sqlite_synchronous.upper()

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA synchronous={synchronous}")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine
    return create_engine(
        url,
        pool_pre_ping=True,
        pool_size=settings.pool_size,
        max_overflow=10,
        pool_timeout=5,
        connect_args={"connect_timeout": 5},
    )


def make_session_factory(engine: Engine) -> SessionFactory:
    return sessionmaker(engine, expire_on_commit=False)
